//! Documents held at their size: they live until translation has read them.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// A sequence read as a vector of its own length. YAML does not say how long
/// a sequence is, so a vector read from it grows by doubling (room for four
/// at least, then up to twice its length): for the large elements of routes
/// and rules, at
/// 10,000 VirtualServices, tens of megabytes held through translation.
pub fn exact<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut v = Vec::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// A map read as its pairs sorted by key, a repeated key keeping its last
/// value: what a `BTreeMap` gives when iterated, without its node of eleven
/// slots (over a kilobyte for a VirtualService's one header match).
pub fn pairs<'de, D, V>(d: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Pairs<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Pairs<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut all: Vec<(String, V)> = Vec::new();
            while let Some(pair) = map.next_entry()? {
                all.push(pair);
            }
            Ok(waypoint_ir::sorted_last_wins(all))
        }
    }
    d.deserialize_map(Pairs(PhantomData))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_iterate_as_the_map_would() {
        let mut d = serde_json::Deserializer::from_str(r#"{"b": 1, "a": 2, "b": 3}"#);
        let got: Vec<(String, u8)> = super::pairs(&mut d).unwrap();
        assert_eq!(got, [("a".to_string(), 2), ("b".to_string(), 3)]);
        let mut d = serde_json::Deserializer::from_str("[1]");
        let err = super::pairs::<_, u8>(&mut d).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid type: sequence, expected a map"),
            "{err}"
        );
    }
}
