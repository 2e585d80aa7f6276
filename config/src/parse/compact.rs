//! Documents held at their size: they live until translation has read them.

use serde::de::{Deserialize, Deserializer};

/// A sequence read as a vector of its own length. YAML does not say how long
/// a sequence is, so a vector read from it grows by doubling (room for four
/// at least, then up to twice its length): for the large elements of routes
/// and rules, at 10,000 VirtualServices, tens of megabytes held through
/// translation.
pub fn exact<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut v = Vec::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}
