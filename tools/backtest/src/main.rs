//! `logpipe-backtest`: see `--help` (logpipe_backtest::HELP).

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::process::ExitCode;

use anyhow::Context;
use logpipe_backtest::{BacktestError, Command, HELP, parse_args, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (options, input, output) = match parse_args(&args) {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run {
            options,
            input,
            output,
        }) => (options, input, output),
        Err(e) => {
            eprintln!("logpipe-backtest: {e}\nTry `logpipe-backtest --help`.");
            return ExitCode::from(2);
        }
    };
    let result = (|| -> anyhow::Result<logpipe_backtest::Summary> {
        let reader: Box<dyn io::BufRead> = match &input {
            Some(path) => Box::new(BufReader::new(
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
            )),
            None => Box::new(io::stdin().lock()),
        };
        let writer: Box<dyn io::Write> = match &output {
            Some(path) => Box::new(BufWriter::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => Box::new(BufWriter::new(io::stdout().lock())),
        };
        Ok(run(&options, reader, writer, &mut io::stderr())?)
    })();
    match result {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logpipe-backtest: {e:#}");
            let usage = matches!(e.downcast_ref(), Some(BacktestError::Usage(_)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
