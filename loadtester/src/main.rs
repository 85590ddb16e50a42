//! `kv-loadtester` binary: parses flags (Go-style `-flag` accepted), runs a
//! load, the report or the failover measurement, prints the summary. Exit
//! status: 0 on success, 1 on an error (also a failover measurement that
//! stopped early), 2 when the final verification found lost writes.

use kv_loadtester::cli::{parse_from, Command};
use kv_loadtester::{failover, output, report, runner};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let cli = match parse_from(argv.clone()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Some(Command::Report(args)) => match report::run_report(&args, &argv.join(" ")).await {
            Ok(runs) => {
                let failed = runs.iter().filter(|r| r.result.is_err()).count();
                println!(
                    "report: {} runs ({failed} failed) in {}",
                    runs.len(),
                    args.out.join("report.md").display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Failover(args)) => {
            match failover::run_failover(&args, &argv.join(" ")).await {
                Ok(r) => {
                    print!("{}", failover::render(&r));
                    if let Some(path) = &args.out {
                        println!("results in {}", path.display());
                    }
                    if r.failure.is_some() {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => match runner::run_load(&cli.run).await {
            Ok(result) => {
                print!("{}", output::render_summary(&result.summary));
                if let Some(dir) = &cli.run.out {
                    println!("results in {}", dir.display());
                }
                match &result.summary.verification {
                    Some(v) if v.lost > 0 => ExitCode::from(2),
                    _ => ExitCode::SUCCESS,
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
