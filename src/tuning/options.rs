//! The options a method offers, declared in the method's own file ([`super::MethodSpec::options`]): each a key
//! (the CLI's flag), a label (the app's slider), a line of help, the values it takes, and how it reads and sets its
//! field of [`MethodOptions`]. The CLI's flags and their help, the app's controls, the check that an option applies
//! to the method, and the fixtures' reader iterate over these; nothing outside a method's file lists its options.

use super::{Method, MethodOptions};
use crate::error::{Error, Result};

/// One option of a method.
pub struct OptionSpec {
    /// The CLI flag (without `--`).
    pub key: &'static str,
    /// The app's label.
    pub label: &'static str,
    /// Other flags that set it.
    pub aliases: &'static [&'static str],
    /// What it is, for `--help` (the default is added from the method's own defaults).
    pub help: &'static str,
    pub kind: OptionKind,
}

/// The values an option takes, and its field.
#[derive(Clone, Copy)]
pub enum OptionKind {
    /// A whole number in `min..=max`.
    Count {
        min: usize,
        max: usize,
        get: fn(&MethodOptions) -> usize,
        set: fn(&mut MethodOptions, usize),
    },
    /// A real number in `min..=max` (or `min..max` when `open`); a logarithmic slider with `log`.
    Real {
        min: f32,
        max: f32,
        open: bool,
        log: bool,
        get: fn(&MethodOptions) -> f32,
        set: fn(&mut MethodOptions, f32),
    },
    /// One of a few words.
    Choice {
        choices: &'static [&'static str],
        get: fn(&MethodOptions) -> &'static str,
        set: fn(&mut MethodOptions, &str),
    },
    /// Letters from `alphabet`, at least one (LoRA's targets among q, k, v).
    Letters {
        alphabet: &'static str,
        get: fn(&MethodOptions) -> String,
        set: fn(&mut MethodOptions, &str),
    },
}

/// The training dropout a method offers (`MethodOptions::dropout`, a rate in [0, 1)).
pub const DROPOUT: OptionKind = OptionKind::Real {
    min: 0.0,
    max: 1.0,
    open: true,
    log: false,
    get: |o| o.dropout,
    set: |o, v| o.dropout = v,
};

impl OptionSpec {
    /// The option's value in `o`, as the CLI would write it.
    pub fn value(&self, o: &MethodOptions) -> String {
        match self.kind {
            OptionKind::Count { get, .. } => get(o).to_string(),
            OptionKind::Real { get, .. } => get(o).to_string(),
            OptionKind::Choice { get, .. } => get(o).to_string(),
            OptionKind::Letters { get, .. } => get(o),
        }
    }

    /// The values it takes, in words.
    pub fn takes(&self) -> String {
        match self.kind {
            OptionKind::Count { min, max, .. } => format!("a whole number from {min} to {max}"),
            OptionKind::Real { min, max, open, .. } => {
                if open {
                    format!("a number in [{min}, {max})")
                } else {
                    format!("a number from {min} to {max}")
                }
            }
            OptionKind::Choice { choices, .. } => choices.join(" or "),
            OptionKind::Letters { alphabet, .. } => {
                format!("one or more of the letters {alphabet}")
            }
        }
    }

    /// Sets the option from text (a CLI value, a fixture's number), refusing what it does not take with a sentence
    /// naming the flag and what it takes.
    pub fn parse_into(&self, o: &mut MethodOptions, text: &str) -> Result<()> {
        let bad = || Error::BadOption {
            key: self.key,
            value: text.to_string(),
            expected: self.takes(),
        };
        let t = text.trim();
        match self.kind {
            OptionKind::Count { min, max, set, .. } => {
                let v: usize = t.parse().map_err(|_| bad())?;
                if !(min..=max).contains(&v) {
                    return Err(bad());
                }
                set(o, v);
            }
            OptionKind::Real {
                min,
                max,
                open,
                set,
                ..
            } => {
                let v: f32 = t.parse().map_err(|_| bad())?;
                let inside = v >= min && if open { v < max } else { v <= max };
                if !inside {
                    return Err(bad());
                }
                set(o, v);
            }
            OptionKind::Choice { choices, set, .. } => {
                if !choices.contains(&t) {
                    return Err(bad());
                }
                set(o, t);
            }
            OptionKind::Letters { alphabet, set, .. } => {
                if t.is_empty() || !t.chars().all(|c| alphabet.contains(c)) {
                    return Err(bad());
                }
                set(o, t);
            }
        }
        Ok(())
    }
}

/// Every option key any method offers, once, in the methods' order: the CLI's flags.
pub fn all_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for m in Method::ALL {
        for s in m.spec().options() {
            if !keys.contains(&s.key) {
                keys.push(s.key);
            }
        }
    }
    keys
}

/// The methods that offer `key`, each with its option.
pub fn offered_by(key: &str) -> Vec<(Method, &'static OptionSpec)> {
    Method::ALL
        .into_iter()
        .filter_map(|m| {
            m.spec()
                .options()
                .iter()
                .find(|s| s.key == key)
                .map(|s| (m, s))
        })
        .collect()
}

/// `--help` of an option key: each method's line and default (methods that share a line share it).
pub fn help(key: &str) -> String {
    // (help, [(method, default)]) in the methods' order.
    let mut parts: Vec<(String, Vec<(Method, String)>)> = Vec::new();
    for (m, s) in offered_by(key) {
        let default = (m, s.value(&MethodOptions::defaults(m)));
        // A choice says its words.
        let h = match s.kind {
            OptionKind::Choice { .. } => format!("{}: {}", s.help, s.takes()),
            _ => s.help.to_string(),
        };
        match parts.iter_mut().find(|(seen, _)| *seen == h) {
            Some((_, d)) => d.push(default),
            None => parts.push((h, vec![default])),
        }
    }
    parts
        .into_iter()
        .map(|(h, d)| {
            let same = d.iter().all(|(_, v)| *v == d[0].1);
            let defaults = if same {
                d[0].1.clone()
            } else {
                let each: Vec<String> = d.iter().map(|(m, v)| format!("{v} for {m}")).collect();
                each.join(", ")
            };
            format!("{h} (default {defaults})")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl MethodOptions {
    /// `method`'s defaults with the given options set by key (a CLI flag's value, a fixture's number); an option
    /// the method does not offer is refused, naming the methods that do.
    pub fn with_values<'a>(
        method: Method,
        given: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut o = Self::defaults(method);
        for (key, text) in given {
            match method.spec().options().iter().find(|s| s.key == key) {
                Some(s) => s.parse_into(&mut o, text)?,
                None => {
                    let by: Vec<String> =
                        offered_by(key).iter().map(|(m, _)| m.to_string()).collect();
                    return Err(Error::OptionNotOffered {
                        key: key.to_string(),
                        method: method.to_string(),
                        offered_by: if by.is_empty() {
                            "no method".to_string()
                        } else {
                            by.join(", ")
                        },
                    });
                }
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_options_are_set_checked_and_refused_by_variant() {
        let o = MethodOptions::with_values(Method::Lora, [("rank", "4"), ("lora-targets", "qkv")])
            .expect("lora options");
        assert_eq!((o.rank, o.lora_targets.as_str()), (4, "qkv"));
        assert!(matches!(
            MethodOptions::with_values(Method::Lora, [("rank", "0")]),
            Err(Error::BadOption { key: "rank", .. })
        ));
        assert!(matches!(
            MethodOptions::with_values(Method::Convpass, [("conv-init", "kaiming")]),
            Err(Error::BadOption {
                key: "conv-init",
                ..
            })
        ));
        assert!(matches!(
            MethodOptions::with_values(Method::VptDeep, [("dropout", "1")]),
            Err(Error::BadOption { key: "dropout", .. })
        ));
        match MethodOptions::with_values(Method::Linear, [("prompts", "5")]) {
            Err(Error::OptionNotOffered {
                method, offered_by, ..
            }) => {
                assert_eq!(method, "linear");
                assert_eq!(offered_by, "vpt-shallow, vpt-deep");
            }
            other => panic!("expected OptionNotOffered, got {other:?}"),
        }
        assert!(matches!(
            Method::from_name("vpt"),
            Err(Error::UnknownMethod { .. })
        ));
    }

    /// Every option's default is a value it takes, and no method offers a key twice.
    #[test]
    fn every_default_is_a_value_its_option_takes() {
        for m in Method::ALL {
            let defaults = MethodOptions::defaults(m);
            let specs = m.spec().options();
            for (i, s) in specs.iter().enumerate() {
                let mut o = defaults.clone();
                s.parse_into(&mut o, &s.value(&defaults))
                    .unwrap_or_else(|e| panic!("{m} --{}: {e}", s.key));
                assert_eq!(o, defaults, "{m} --{}", s.key);
                assert!(
                    specs[..i].iter().all(|t| t.key != s.key),
                    "{m}: --{} twice",
                    s.key
                );
            }
        }
    }
}
