//! The small enums of the domain (attention modes, scorers, attribution methods, ...) are
//! spelled the same in `config.json`, the API, the CLI and permalinks. [`named!`] gives such
//! an enum, from its `ALL` list and its name method, `Display`, `FromStr` (whose error lists
//! the names to use) and serde by name, once.

/// `"a, b or c"`.
pub(crate) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Implements `Display`, `FromStr` (with [`crate::Error::Invalid`]) and serde for `$t` by
/// the names `$t::$name` gives to the values in `$t::ALL`; `$what` names the kind in errors.
macro_rules! named {
    ($t:ty, $name:ident, $what:literal) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.$name())
            }
        }
        impl std::str::FromStr for $t {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                <$t>::ALL
                    .into_iter()
                    .find(|x| x.$name() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = <$t>::ALL.iter().map(|x| x.$name()).collect();
                        $crate::Error::Invalid(format!(
                            "unknown {} {s:?}; use {}",
                            $what,
                            $crate::names::one_of(&names)
                        ))
                    })
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.$name())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use named;

#[cfg(test)]
mod tests {
    use crate::{Method, Mode};

    #[test]
    fn names_read_back_and_errors_list_them() {
        assert_eq!(super::one_of(&["a", "b", "c"]), "a, b or c");
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        let e = "loud".parse::<Mode>().unwrap_err().to_string();
        assert!(e.contains("sparsemax, uniform or shuffled"), "{e}");
        let e = serde_json::from_str::<Method>("\"saliency\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("erasure or word_erasure"), "{e}");
    }
}
