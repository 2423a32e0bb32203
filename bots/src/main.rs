//! The `bots` binary: parses the flags, runs the swarm with a live line on stderr, prints the report on
//! stdout (and as JSON with `--json`), and exits non-zero when the run found a problem.

use std::process::ExitCode;

use bots::stats::BotError;
use bots::{Args, Plan, Progress};
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Error details printed live on stderr; the rest are only counted.
const ERRORS_PRINTED_MAX: usize = 20;
/// Said at the start of an `--insecure` run, before anything connects.
const INSECURE_WARNING: &str = "bots: WARNING: --insecure: server certificates are NOT verified (any \
    certificate for any name is accepted); the traffic is encrypted but anyone between the bots and the \
    server can read and change it. For local test runs only.";

fn main() -> ExitCode {
    let plan = match Plan::new(Args::parse()) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("bots: {e}");
            return ExitCode::from(2);
        }
    };
    if plan.args.insecure {
        eprintln!("{INSECURE_WARNING}");
    }
    let json = plan.args.json.clone();
    // Ctrl-C stops the run cleanly and still prints the report; a second one exits at once.
    let (stop_tx, stop) = crossbeam_channel::bounded(1);
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("bots: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen > 1 {
                    eprintln!("bots: signal {signal} again: exiting without a report");
                    std::process::exit(130);
                }
                eprintln!("bots: signal {signal}: stopping (again to exit at once)");
                let _ = stop_tx.try_send(());
            }
        })
        .expect("spawn the signal thread");

    let rooms = match &plan.rooms {
        Some(r) => format!(
            " in {} rooms ({} .. {})",
            r.count,
            r.name(0),
            r.name(r.count - 1)
        ),
        None => String::new(),
    };
    eprintln!(
        "bots: {} bots ({}){rooms} against {} on {} threads for {:?}, {} connects/s",
        plan.count,
        plan.args.mix,
        plan.target_label(),
        plan.threads,
        plan.args.duration,
        plan.args.connect_rate
    );
    if plan.ramp_up() >= plan.args.duration {
        eprintln!(
            "bots: warning: the ramp-up ({:.1} s at --connect-rate {}) is not shorter than --duration: \
             some bots will never connect",
            plan.ramp_up().as_secs_f64(),
            plan.args.connect_rate
        );
    }
    let mut printed = 0;
    let result = bots::run(plan, &stop, print_progress, |e: &BotError| {
        if printed < ERRORS_PRINTED_MAX {
            eprintln!("bots: ERROR {e}");
            printed += 1;
        }
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("bots: cannot start the workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    if let Some(path) = json {
        if let Err(e) = std::fs::write(&path, report.to_json() + "\n") {
            eprintln!("bots: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_progress(p: &Progress) {
    // Resumes only once some bot asked for one: a run without flappers keeps the short line.
    let r = &p.resumes;
    let resumes = if r.asked > 0 {
        format!(
            "  resumes {} (delta {}, full {}, refused {})",
            r.honoured, r.first_update_delta, r.first_update_full, r.refused
        )
    } else {
        String::new()
    };
    // Matchmaking only once some bot asked: a run without --matchmake keeps the short line.
    let matchmake = if p.matchmake_requests > 0 {
        format!(
            "  matchmake {} (placed {}, p99 {:.1} ms)",
            p.matchmake_requests, p.matchmake_placed, p.matchmake_p99_ms
        )
    } else {
        String::new()
    };
    eprintln!(
        "[{:>5.0}s] connected {}/{}  updates/s {:.0} ({:.1}/bot)  ack p99 {:.1} ms  errors {}{resumes}{matchmake}{}",
        p.elapsed.as_secs_f64(),
        p.connected,
        p.bots,
        p.updates_per_s,
        p.updates_per_s_per_bot,
        p.rtt_p99_ms,
        p.errors,
        if p.bots_overloaded {
            "  BOTS OVERLOADED (input slots skipped)"
        } else {
            ""
        }
    );
}
