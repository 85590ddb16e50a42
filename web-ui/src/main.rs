//! Entry point of the dashboard: mounts the root component into `<body>`.

fn main() {
    yew::Renderer::<kv_web_ui::app::App>::new().render();
}
