//! What each bot does ([`Behaviour`]) and how a run mixes them ([`Mix`], from `--mix wander=80,slow=20`).

use std::fmt;
use std::str::FromStr;

/// One bot's behaviour for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    /// Joins and sends an input every `--input-interval-ms`, turning at random: the reference player.
    Wander,
    /// Joins and then sends nothing (the WebSocket layer still answers pings).
    Idle,
    /// Plays like `wander` but reads at most `--slow-bps` bytes per second through a small receive
    /// buffer, so the server must skip it and later send it coalesced updates.
    Slow,
    /// Plays like `wander`, drops its connection abruptly (no close frame) at random moments, reconnects
    /// with backoff and resumes its player with its resume token, keeping its mirror.
    Flapper,
    /// Watches without joining: sends `Watch`, never `Hello`.
    Spectator,
    /// Plays like `wander`, drops its connection at random moments (half the time abruptly, half with a
    /// close frame) and joins again as a new player, never resuming: protocol v1's flapper. Its abrupt
    /// drops leave players detached on the server until `--resume-grace-ms` ends them.
    Rejoiner,
}

impl Behaviour {
    /// Every behaviour, in report order; [`Behaviour::index`] is the position here.
    pub const ALL: [Behaviour; 6] = [
        Behaviour::Wander,
        Behaviour::Idle,
        Behaviour::Slow,
        Behaviour::Flapper,
        Behaviour::Spectator,
        Behaviour::Rejoiner,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Wander => "wander",
            Behaviour::Idle => "idle",
            Behaviour::Slow => "slow",
            Behaviour::Flapper => "flapper",
            Behaviour::Spectator => "spectator",
            Behaviour::Rejoiner => "rejoiner",
        }
    }

    /// Whether the bot sends `Hello` and so controls an entity.
    pub fn joins(self) -> bool {
        self != Behaviour::Spectator
    }

    /// Whether the bot sends inputs (and so measures input -> acknowledgement latency).
    pub fn sends_inputs(self) -> bool {
        matches!(
            self,
            Behaviour::Wander | Behaviour::Slow | Behaviour::Flapper | Behaviour::Rejoiner
        )
    }

    /// Whether the bot's reads are capped by `--slow-bps`. Its latencies measure the cap, not the
    /// server, so the headline figures leave it out (it keeps its own row in the report).
    pub fn reads_slowly(self) -> bool {
        self == Behaviour::Slow
    }

    /// Whether the bot drops its connection at random moments (`--flap-ms`).
    pub fn flaps(self) -> bool {
        matches!(self, Behaviour::Flapper | Behaviour::Rejoiner)
    }

    /// Whether the bot takes its player back after a lost connection (`Hello.resume`), keeping its mirror.
    pub fn resumes(self) -> bool {
        self == Behaviour::Flapper
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Behaviour {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Behaviour::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown behaviour {s:?} (known: wander, idle, slow, flapper, spectator, rejoiner)"
                )
            })
    }
}

/// Relative weights of the behaviours; bots are dealt out in proportion, interleaved so that every part
/// of the ramp-up sees the whole mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; Behaviour::ALL.len()],
}

/// Largest weight one behaviour may have in `--mix`, so the sum cannot overflow.
const WEIGHT_MAX: u32 = 1_000_000;

impl Default for Mix {
    /// Every bot wanders.
    fn default() -> Self {
        let mut weights = [0; Behaviour::ALL.len()];
        weights[Behaviour::Wander.index()] = 1;
        Mix { weights }
    }
}

impl Mix {
    pub fn weight(&self, behaviour: Behaviour) -> u32 {
        self.weights[behaviour.index()]
    }

    /// The behaviour of each of `count` bots. Smooth weighted round-robin: exact proportions (up to
    /// rounding) and no long runs of one behaviour.
    pub fn assign(&self, count: usize) -> Vec<Behaviour> {
        let total: i64 = self.weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = [0i64; Behaviour::ALL.len()];
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            for (c, &w) in current.iter_mut().zip(&self.weights) {
                *c += i64::from(w);
            }
            let pick = (0..current.len())
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .expect("at least one behaviour");
            current[pick] -= total;
            out.push(Behaviour::ALL[pick]);
        }
        out
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `wander=80,slow=10,flapper=10`; a bare name means weight 1; a behaviour left out gets 0.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = [0u32; Behaviour::ALL.len()];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight: u32 = weight
                        .trim()
                        .parse()
                        .map_err(|_| format!("weight of {name:?} is not a whole number"))?;
                    (name.trim(), weight)
                }
                None => (part, 1),
            };
            if weight > WEIGHT_MAX {
                return Err(format!("weight of {name:?} is over {WEIGHT_MAX}"));
            }
            let behaviour: Behaviour = name.parse()?;
            weights[behaviour.index()] = weight;
        }
        if weights.iter().all(|&w| w == 0) {
            return Err("the mix gives no behaviour a weight above 0".to_string());
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Behaviour::ALL
            .into_iter()
            .filter(|b| self.weight(*b) > 0)
            .map(|b| format!("{b}={}", self.weight(b)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_and_bare_names() {
        let mix: Mix = "wander=80, slow=10,flapper=10".parse().unwrap();
        assert_eq!(mix.weight(Behaviour::Wander), 80);
        assert_eq!(mix.weight(Behaviour::Slow), 10);
        assert_eq!(mix.weight(Behaviour::Idle), 0);
        assert_eq!(mix.to_string(), "wander=80,slow=10,flapper=10");
        let bare: Mix = "spectator".parse().unwrap();
        assert_eq!(bare.assign(3), vec![Behaviour::Spectator; 3]);
    }

    #[test]
    fn rejects_unknown_names_bad_weights_and_all_zero() {
        assert!("walker=1".parse::<Mix>().is_err());
        assert!("wander=x".parse::<Mix>().is_err());
        assert!("wander=0".parse::<Mix>().is_err());
        assert!("".parse::<Mix>().is_err());
        assert!("wander=2000000".parse::<Mix>().is_err());
    }

    #[test]
    fn assignment_keeps_proportions_and_interleaves() {
        let mix: Mix = "wander=80,slow=10,flapper=10".parse().unwrap();
        let bots = mix.assign(100);
        let count = |b| bots.iter().filter(|&&x| x == b).count();
        assert_eq!(count(Behaviour::Wander), 80);
        assert_eq!(count(Behaviour::Slow), 10);
        assert_eq!(count(Behaviour::Flapper), 10);
        // Interleaved: the first ten bots already hold one of each minority behaviour.
        assert!(bots[..10].contains(&Behaviour::Slow));
        assert!(bots[..10].contains(&Behaviour::Flapper));
    }

    #[test]
    fn default_is_all_wander() {
        assert_eq!(Mix::default().assign(4), vec![Behaviour::Wander; 4]);
        assert_eq!(Mix::default().to_string(), "wander=1");
    }
}
