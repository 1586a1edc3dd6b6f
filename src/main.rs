//! The `sightline` command: parses arguments, sets up logging, and calls into
//! the library. Exit codes are `client::exit` (listed in `--help`).

#![warn(clippy::too_many_lines)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use sightline::metrics::telemetry;
use sightline::tools::client::{self, exit, Target};
use sightline::tools::{bench, demo};
use sightline::{app, config::Config};

#[derive(Parser)]
#[command(
    name = "sightline",
    version,
    about = "Edge video analytics: camera streams in, alerts out",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Shown under `--help`; the values are `client::exit`.
const EXIT_CODES: &str = "Exit codes:
  0  done
  1  failed while running (the daemon's own error; doctor found a problem)
  2  bad input: arguments, a config file, or a request the daemon refused
  3  the daemon could not be reached
  4  the daemon refused the API key
  5  no such stream, index, event or alert";

#[derive(Subcommand)]
enum Command {
    /// Run the daemon with a config file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file (and its events against the model) and exit.
    CheckConfig { file: PathBuf },
    /// Serve MP4 (H.264) files over RTSP as stand-in cameras, one mount per
    /// file named after it, until interrupted.
    Serve {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 8554)]
        port: u16,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Watch a bundled clip with the default model; no camera, broker or config needed.
    Demo {
        /// How long to watch, in seconds (default: one pass of the clip).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Manage the streams of a running daemon.
    Streams {
        #[command(subcommand)]
        cmd: client::Streams,
        #[command(flatten)]
        target: Target,
    },
    /// Manage the scene indexes of a running daemon's streams.
    Indexes {
        #[command(subcommand)]
        cmd: client::Indexes,
        #[command(flatten)]
        target: Target,
    },
    /// Manage the events of a running daemon.
    Events {
        #[command(subcommand)]
        cmd: client::Events,
        #[command(flatten)]
        target: Target,
    },
    /// Manage the alerts of a running daemon.
    Alerts {
        #[command(subcommand)]
        cmd: client::Alerts,
        #[command(flatten)]
        target: Target,
    },
    /// The site this box belongs to (`[fleet]`): boxes, cameras, leases.
    Fleet {
        #[command(subcommand)]
        cmd: client::Fleet,
        #[command(flatten)]
        target: Target,
    },
    /// Run sightline and the do-it-yourself Python peer side by side on the
    /// same RTSP cameras at a series of stream counts; write a table and a
    /// plot (needs `scripts/setup --bench`; run from the checkout).
    /// `sightline bench soak --hours N` runs the long-life soak instead.
    Bench(bench::Options),
    /// Look after the state database (with the daemon stopped).
    State {
        #[command(subcommand)]
        cmd: StateCmd,
    },
    /// Check this machine for what sightline needs (GStreamer plugins, ONNX
    /// Runtime, models, cameras, broker, state directory), one line each.
    Doctor {
        #[arg(long, short, default_value = "/etc/sightline/sightline.toml")]
        config: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand)]
enum StateCmd {
    /// Copy every readable row of a damaged state database into a fresh
    /// one; the damaged file is kept beside it as `state.sqlite3.corrupt-<ms>`.
    Recover {
        /// The state directory (`[state] dir`).
        #[arg(long)]
        state_dir: PathBuf,
    },
}

/// `sightline state recover`: exit 0 with what was copied, 1 on failure.
fn recover(dir: &std::path::Path) -> ExitCode {
    match sightline::store::integrity::recover(dir) {
        Ok(r) => {
            for (table, n) in &r.tables {
                println!("  {table}: {n} rows");
            }
            println!(
                "recovered {} into a fresh database ({} unreadable rows lost); the damaged one is kept at {}",
                dir.join(sightline::store::integrity::FILE).display(),
                r.lost,
                r.kept.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot recover {}: {e:#}", dir.display());
            ExitCode::from(1)
        }
    }
}

/// Caps glibc's malloc arenas at two unless the user set `MALLOC_ARENA_MAX`.
/// By default glibc gives busy threads their own arenas (up to 8 per core),
/// and each keeps freed memory; with a streaming thread per camera that cost
/// about 25 MB of peak RSS at 2–16 cameras and gained nothing measurable
/// (docs/PERFORMANCE.md). Called before any thread starts.
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread has
        // been started yet that could be allocating.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::State {
            cmd: StateCmd::Recover { state_dir },
        } => {
            telemetry::init("warn");
            recover(&state_dir)
        }
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => {
            telemetry::init("info");
            let mut config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if config.api.is_some() && config.state.dir.is_none() {
                config.state.dir = Some(client::default_state_dir());
            }
            block_on(async move {
                app::run(config, app::Hooks::default(), shutdown_signal())
                    .await
                    .map(|_| ())
            })
        }
        Command::Serve { port, files } => {
            telemetry::init("warn");
            serve(port, &files)
        }
        Command::Demo { seconds } => {
            telemetry::init("warn");
            block_on(async move { demo::run(seconds).await.map(|_| ()) })
        }
        Command::Bench(options) => {
            // Fifty simulated boxes would drown the table in their warnings.
            let fleet = matches!(options.kind, Some(bench::Kind::Fleet(_)));
            telemetry::init(if fleet { "error" } else { "warn" });
            block_on(async move { bench::main(&options).await })
        }
        Command::Doctor { config, json } => {
            telemetry::init("error");
            doctor(&config, json)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "sightline",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            let mut out = std::io::stdout();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Streams { cmd, target } => call(&target, client::streams(cmd)),
        Command::Indexes { cmd, target } => call(&target, client::indexes(cmd)),
        Command::Events { cmd, target } => call(&target, client::events(cmd)),
        Command::Alerts { cmd, target } => call(&target, client::alerts(cmd)),
        Command::Fleet { cmd, target } => call(&target, client::fleet(cmd)),
    }
}

/// `sightline check-config`: loads the file, compiles its events and opens
/// every model as the workers would; one line per model, exit 2 on a problem.
fn check_config(file: &std::path::Path) -> ExitCode {
    telemetry::init("warn");
    let config = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let compiled = app::compile(&config, None)
        .and_then(|(models, events)| app::probe(&config, &models).map(|()| (models, events)));
    match compiled {
        Ok((models, events)) => {
            let each: Vec<String> = models
                .all()
                .iter()
                .map(|l| {
                    let m = &l.manifest;
                    let what = match m.embedding {
                        Some(e) => format!("a dual encoder, {}-value embeddings", e.size),
                        None => format!("{} labels", m.labels.len()),
                    };
                    format!("{} = {} ({what})", l.name, m.dir.display())
                })
                .collect();
            println!(
                "{}: ok ({} streams, {} events, {} alerts; models {})",
                file.display(),
                config.streams.len(),
                events.len(),
                config.alerts.len(),
                each.join(", "),
            );
            for e in &events {
                println!("  event {} -> model {}", e.id, e.model_name);
            }
            if let Some(e) = sightline::record::estimate_on_disk(&config.recording) {
                print_budget(&e);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e:#}", file.display());
            ExitCode::from(2)
        }
    }
}

/// What `check-config` says about the recording budget.
fn print_budget(e: &sightline::record::budget::Estimate) {
    let gb = e.max_bytes as f64 / 1e9;
    match (e.bytes_per_hour, e.holds_hours) {
        (Some(rate), Some(h)) => println!(
            "  recording budget {gb:.2} GB: {:.0} MB/h measured on disk, holds about {h:.1} hours",
            rate / 1e6
        ),
        _ => println!(
            "  recording budget {gb:.2} GB: too little recording on disk yet to measure the bitrate"
        ),
    }
    if let Some(w) = &e.warning {
        println!("  warning: {w}");
    }
}

/// `sightline doctor`: a line per finding; exit 1 if any failed.
fn doctor(config: &std::path::Path, json: bool) -> ExitCode {
    let findings = sightline::tools::doctor::run(config);
    if json {
        match serde_json::to_string_pretty(&findings) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else {
        for f in &findings {
            println!("{}", f.line());
        }
    }
    if findings.iter().all(|f| f.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    }
}

/// Runs one client call and prints the reply's data: a table, or JSON.
fn call(target: &Target, c: client::Call) -> ExitCode {
    telemetry::init("warn");
    let (base, key) = match client::resolve(target) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(exit::BAD_INPUT);
        }
    };
    let json = target.json;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(client::send(&base, &key, c)) {
        Ok(data) if json => match serde_json::to_string_pretty(&data) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(data) if data.get("site").is_some() && data.get("unplaced").is_some() => {
            print!("{}", client::table::site(&data));
            ExitCode::SUCCESS
        }
        Ok(data) => {
            print!("{}", client::table::render(&data));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn serve(port: u16, files: &[PathBuf]) -> ExitCode {
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_stem()
                .map_or("clip".into(), |s| s.to_string_lossy().into_owned())
        })
        .collect();
    for f in files {
        if !f.is_file() {
            eprintln!("error: {} is not a file", f.display());
            return ExitCode::from(2);
        }
    }
    let mounts: Vec<(&str, &std::path::Path)> = names
        .iter()
        .map(String::as_str)
        .zip(files.iter().map(PathBuf::as_path))
        .collect();
    let server = match sightline::tools::rtsp_server::RtspServer::serve_files(port, &mounts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for n in &names {
        println!("{}", server.url(n));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    block_on(async {
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    })
}

/// Loads a config file, printing every problem and giving exit code 2 if bad.
fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(2)
    })
}

/// The async runtime a command runs on.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(f);
    // Dropping a runtime waits for its blocking tasks without limit; a task
    // stuck in a system call must not keep a stopping daemon alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
