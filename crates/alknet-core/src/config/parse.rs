//! The serde passes over one file: its top-level keys, and one section's
//! table.
//!
//! Each pass runs toml's own deserializer over the whole text, so an error
//! anywhere keeps toml's line, column and key in its message. A file is a few
//! kilobytes read once at start: parsing it once per section costs nothing
//! that matters.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor,
};

/// Fails on the first top-level key not in `known`, pointing at it and
/// listing `known`, as `deny_unknown_fields` does inside a table.
pub(super) fn only_known_keys(text: &str, known: &[&str]) -> Result<(), toml::de::Error> {
    toml::Deserializer::parse(text)?.deserialize_map(KnownKeys(known))
}

/// `T` from the top-level table under `key`, or `T::default()` when the
/// file has none.
pub(super) fn section<T: DeserializeOwned + Default>(
    text: &str,
    key: &str,
) -> Result<T, toml::de::Error> {
    toml::Deserializer::parse(text)?.deserialize_map(SectionUnder {
        key,
        section: PhantomData,
    })
}

struct KnownKeys<'a>(&'a [&'a str]);

impl<'de> Visitor<'de> for KnownKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(KnownKey(self.0))?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// One top-level key, refused unless known. Refusing it while it is read as a
/// key makes toml point the error at the key itself.
struct KnownKey<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for KnownKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let key = String::deserialize(deserializer)?;
        if self.0.contains(&key.as_str()) {
            return Ok(());
        }
        // serde's own wording for an unknown field, which needs `'static`
        // names: the same message whether the key is core's or a section's.
        let expected = self
            .0
            .iter()
            .map(|known| format!("`{known}`"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(de::Error::custom(format_args!(
            "unknown field `{key}`, expected one of {expected}"
        )))
    }
}

struct SectionUnder<'a, T> {
    key: &'a str,
    section: PhantomData<T>,
}

impl<'de, T: DeserializeOwned + Default> Visitor<'de> for SectionUnder<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut section = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.key {
                section = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(section.unwrap_or_default())
    }
}
