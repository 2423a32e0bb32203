//! The bots for your own game, worked on the teams example (`examples/teams/game.rs` of the root crate):
//! a `bots::BotGame` (`teams.rs`) says what the bots mirror (`TeamsEntity`), where a player's ack is (its primary entity's
//! `seq`) and what a bot sends (orders for its whole squad); [`bots::run_with`] runs the same swarm,
//! checks and report as the `bots` binary does for the arena. It takes the `bots` flags.
//!
//! ```text
//! cargo run --example teams                                       # the game, on 127.0.0.1:7000
//! cargo run -p bots --example teams_bots -- --count 50 --duration 20s
//! ```
//!
//! A match ends (its connections closed with 4007, counted as drops), so a run longer than the match
//! (180 s by default) sees its bots reconnect into the next one.

#[path = "../../../examples/teams/game.rs"]
mod game;
mod teams;

use std::process::ExitCode;

use bots::{Args, Plan};
use clap::Parser;
use teams::Teams;

fn main() -> ExitCode {
    let plan = match Plan::new(Args::parse()) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("teams bots: {e}");
            return ExitCode::from(2);
        }
    };
    // No Ctrl-C handling here (the `bots` binary shows it): the run ends after --duration.
    let (_stop_tx, stop) = crossbeam_channel::bounded(1);
    let report = bots::run_with::<Teams>(
        plan,
        &stop,
        |p| {
            eprintln!(
                "[{:>4.0}s] connected {}/{}",
                p.elapsed.as_secs_f64(),
                p.connected,
                p.bots
            )
        },
        |e| eprintln!("teams bots: ERROR {e}"),
    );
    match report {
        Ok(report) => {
            print!("{}", report.table());
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("teams bots: cannot start the workers: {e}");
            ExitCode::FAILURE
        }
    }
}
