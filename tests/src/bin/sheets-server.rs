//! `sheets-server`: the local Google Sheets API v4 server as a process, for the README demo and
//! benchmarks. Serves fixture files and generated sheets until SIGTERM or SIGINT.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Parser;
use testkit::sheets_server::{serve_with_shutdown, SheetsServer, Spreadsheet};

/// Serve spreadsheets over a local Google Sheets API v4 (spreadsheets.get, values.get,
/// values.batchGet) for tests and demos.
#[derive(Debug, Parser)]
#[command(name = "sheets-server", version)]
struct Args {
    /// Serve every .csv, .xlsx and .json fixture in DIR; the spreadsheet id is the file stem.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Serve a generated mixed-type sheet: a header row plus ROWS data rows of COLS columns,
    /// e.g. `bench:1000000x5`; append `:SEED` to vary the data. Repeatable.
    #[arg(long, value_name = "ID:ROWSxCOLS[:SEED]")]
    generate: Vec<String>,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Also write the chosen port to this file once listening.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,
}

/// `ID:ROWSxCOLS[:SEED]`.
fn parse_generate(spec: &str) -> anyhow::Result<Spreadsheet> {
    let mut parts = spec.split(':');
    let (Some(id), Some(size)) = (parts.next(), parts.next()) else {
        bail!("--generate {spec:?}: expected ID:ROWSxCOLS[:SEED]");
    };
    let seed = parts.next().map_or(Ok(1), str::parse).with_context(|| format!("--generate {spec:?}: bad seed"))?;
    if id.is_empty() || parts.next().is_some() {
        bail!("--generate {spec:?}: expected ID:ROWSxCOLS[:SEED]");
    }
    let (rows, cols) = size
        .split_once(['x', 'X'])
        .and_then(|(r, c)| Some((r.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
        .with_context(|| format!("--generate {spec:?}: size must be ROWSxCOLS, e.g. 100000x10"))?;
    Ok(Spreadsheet::generated(id, rows, cols, seed))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let server = match &args.dir {
        Some(dir) => SheetsServer::from_dir(dir)?,
        None => SheetsServer::new(),
    };
    for spec in &args.generate {
        server.put(parse_generate(spec)?);
    }
    for id in server.ids() {
        let s = server.get(&id).expect("listed id is served");
        eprintln!("serving {id}: {} tab(s), {} cells", s.sheets.len(), s.cell_count());
    }

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr().context("cannot read the bound address")?;
    if let Some(path) = &args.port_file {
        // Write then rename, so a reader polling for the file never sees it half-written.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", addr.port()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write port file {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}/").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);

    serve_with_shutdown(listener, server, shutdown_signal()).await.context("server failed")
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sheets-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
    }

    #[test]
    fn parses_generate_specs() {
        let s = parse_generate("bench:10x3").unwrap();
        assert_eq!((s.id.as_str(), s.sheets[0].rows.len()), ("bench", 11));
        assert_eq!(parse_generate("bench:10x3:9").unwrap(), Spreadsheet::generated("bench", 10, 3, 9));
        for bad in ["bench", "bench:10", "bench:axb", ":1x1", "b:1x1:s", "b:1x1:2:3"] {
            assert!(parse_generate(bad).is_err(), "{bad}");
        }
    }
}
