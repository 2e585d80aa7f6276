//! Kubernetes labels: a small map from key to value.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;

/// Labels, sorted by key, each key once.
///
/// A workload carries a handful of labels; a `BTreeMap` allocates a node with
/// room for eleven whatever it holds (over 500 bytes for string pairs), and a
/// mesh of 10,000 Services holds some 70,000 label sets (Pods, endpoints,
/// selectors, subsets). This holds exactly its pairs; lookups are a binary
/// search. It reads, prints and compares as the map it stands for.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[(String, String)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&String> {
        let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        Some(&self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every label of `selector` is here with the same value.
    pub fn matches(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }
}

/// A key given twice keeps its last value, as inserting into a map would.
impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Labels(sorted_last_wins(iter.into_iter().collect()).into_boxed_slice())
    }
}

/// `pairs` sorted by key, a key given twice keeping its last value: what a map
/// built from them would hold, without the map.
fn sorted_last_wins<V>(mut pairs: Vec<(String, V)>) -> Vec<(String, V)> {
    // Stable, so equal keys stay in the order given and the last is kept.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, V)> = Vec::with_capacity(pairs.len());
    for pair in pairs {
        match out.last_mut() {
            Some(last) if last.0 == pair.0 => *last = pair,
            _ => out.push(pair),
        }
    }
    out
}

impl<'a> FromIterator<(&'a str, &'a str)> for Labels {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        iter.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Panics when `key` is absent, as indexing a map does.
impl std::ops::Index<&str> for Labels {
    type Output = String;
    fn index(&self, key: &str) -> &String {
        self.get(key).expect("no such label")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Labels(sorted_pairs(d)?.into_boxed_slice()))
    }
}

/// A map read as its pairs sorted by key, a repeated key keeping its last
/// value: what a `BTreeMap` gives when iterated, without its nodes of eleven
/// slots. For `#[serde(deserialize_with)]` on any map with string keys.
pub fn sorted_pairs<'de, D, V>(d: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Pairs<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Pairs<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(sorted_last_wins(pairs))
        }
    }
    d.deserialize_map(Pairs(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::Labels;

    #[test]
    fn reads_and_looks_up_as_a_map() {
        let l: Labels = [("b", "2"), ("a", "1"), ("b", "3")].into_iter().collect();
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("a").map(String::as_str), Some("1"));
        assert_eq!(l.get("b").map(String::as_str), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(format!("{l:?}"), r#"{"a": "1", "b": "3"}"#);
        let sel: Labels = [("b", "3")].into_iter().collect();
        assert!(l.matches(&sel) && l.matches(&Labels::default()));
        assert!(!sel.matches(&l));
    }
}
