//! `kv-loadtester` binary: parses flags (Go-style `-flag` accepted), runs a
//! load, the report or the failover measurement, prints the summary. Exit
//! status: 0 on success, 1 on an error (also a failover measurement that
//! stopped early, or a report with a failed run), 2 when the final
//! verification found lost writes or another value under an acknowledged
//! version, 3 when the history broke a promise of the configuration
//! (linearizability, stale-after-ack reads, session guarantees; see
//! `consistency`). A report exits with the highest status of its runs.

use kv_loadtester::cli::{parse_from, Command};
use kv_loadtester::peers::Target;
use kv_loadtester::{bench, failover, output, report, runner};
use std::process::ExitCode;

/// The exit status of one run (see the crate docs): 3 for a broken
/// promise, 2 for lost or different acknowledged writes, else 0.
fn run_status(s: &kv_loadtester::stats::Summary) -> u8 {
    if s.consistency.as_ref().is_some_and(|c| !c.broken.is_empty()) {
        3
    } else if s
        .verification
        .as_ref()
        .is_some_and(|v| v.lost > 0 || v.value_mismatch > 0)
    {
        2
    } else {
        0
    }
}

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
                let worst = runs
                    .iter()
                    .map(|r| match &r.result {
                        Ok(result) => run_status(&result.summary),
                        Err(_) => 1,
                    })
                    .max()
                    .unwrap_or(0);
                ExitCode::from(worst)
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
        Some(Command::Bench(args)) => match bench::run_bench(&args, &argv.join(" ")).await {
            Ok(r) => {
                print!("{}", bench::render(&r));
                println!("results in {}", args.out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        None if cli.run.target != Target::Kv => {
            match bench::measure(&cli.run, runner::Plan::from_args(&cli.run)).await {
                Ok(m) => {
                    println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
                    ExitCode::SUCCESS
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
                ExitCode::from(run_status(&result.summary))
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
