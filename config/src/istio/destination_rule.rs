//! `DestinationRule`: subsets now; `trafficPolicy` belongs to the resilience filters.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct DestinationRuleDoc {
    pub spec: DestinationRuleSpec,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct DestinationRuleSpec {
    pub host: String,
    pub subsets: Vec<SubsetSpec>,
}

#[derive(Deserialize, Debug)]
pub struct SubsetSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}
