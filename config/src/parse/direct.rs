//! Reading a file's documents straight into typed documents, for the kinds a
//! large mesh holds thousands of, without a `serde_json::Value` per document
//! (building it and reading it again took nearly as long as the YAML parser
//! loading its events, at 10,000 Services).
//!
//! A document is read directly when its `apiVersion` and `kind` come before
//! everything else, as `kubectl` and every generator write them; any other
//! document is collected into a `Value` in the same pass and read as before.
//! The reader gives up on the first error of any kind, and the caller then
//! reads the rest of the file through `Value`, so every diagnostic is the one
//! that reading has always given.

use super::strict::StrictSeed;
use super::{kind_of, Head, Meta};
use crate::gateway_api::{GrpcRouteDoc, HttpRouteDoc, TcpRouteDoc};
use crate::istio::{DestinationRuleDoc, ServiceEntryDoc, VirtualServiceDoc, WorkloadEntryDoc};
use crate::kube::{EndpointSliceDoc, PodDoc, ServiceDoc};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;
use waypoint_ir::ResourceKind;

/// A document of a kind read directly. None of these reads `metadata` (the
/// head does), which is why AuthorizationPolicy is not among them.
#[derive(Clone)]
pub enum Doc {
    Service(ServiceDoc),
    Pod(PodDoc),
    EndpointSlice(EndpointSliceDoc),
    ServiceEntry(ServiceEntryDoc),
    WorkloadEntry(WorkloadEntryDoc),
    VirtualService(VirtualServiceDoc),
    DestinationRule(DestinationRuleDoc),
    HttpRoute(HttpRouteDoc),
    GrpcRoute(GrpcRouteDoc),
    TcpRoute(TcpRouteDoc),
}

// One lives at a time, on its way into its list: boxing would only add an
// allocation per document.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Read {
    Value(Value),
    Typed(Head, Doc),
}

/// One document: `None` when empty.
pub fn read(doc: serde_yaml_ng::Deserializer<'_>) -> Result<Option<Read>, serde_yaml_ng::Error> {
    doc.deserialize_any(Top)
}

struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Option<Read>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Read>, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Read>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Read>, A::Error> {
        // `apiVersion` and `kind`, in the order read.
        let mut head: Vec<(String, Value)> = Vec::with_capacity(2);
        while let Some(key) = map.next_key::<String>()? {
            let new = |k: &str| k == key && head.iter().all(|(h, _)| *h != key);
            if new("apiVersion") || new("kind") {
                let value = map.next_value()?;
                head.push((key, value));
                continue;
            }
            let field = |name: &str| head.iter().find(|(k, _)| k == name)?.1.as_str();
            if let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) {
                if let Some(k) = kind_of(api_version, kind).filter(|k| direct(*k)) {
                    let (api_version, kind) = (api_version.to_string(), kind.to_string());
                    return typed(k, api_version, kind, key, map).map(Some);
                }
            }
            let mut object: serde_json::Map<String, Value> = head.into_iter().collect();
            let mut key = Some(key);
            while let Some(k) = key {
                object.insert(k, map.next_value()?);
                key = map.next_key()?;
            }
            return Ok(Some(Read::Value(Value::Object(object))));
        }
        Ok(Some(Read::Value(Value::Object(head.into_iter().collect()))))
    }
}

fn direct(kind: ResourceKind) -> bool {
    use ResourceKind as K;
    matches!(
        kind,
        K::Service
            | K::Pod
            | K::EndpointSlice
            | K::ServiceEntry
            | K::WorkloadEntry
            | K::VirtualService
            | K::DestinationRule
            | K::HTTPRoute
            | K::GRPCRoute
            | K::TCPRoute
    )
}

/// Reads the rest of the document, from `first` on, as `kind`'s document.
fn typed<'de, A: MapAccess<'de>>(
    kind: ResourceKind,
    api_version: String,
    kind_name: String,
    first: String,
    map: A,
) -> Result<Read, A::Error> {
    let mut metadata = None;
    let rest = Rest {
        map,
        first: Some(first),
        metadata: &mut metadata,
    };
    use ResourceKind as K;
    let doc = match kind {
        K::Service => Doc::Service(Deserialize::deserialize(rest)?),
        K::Pod => Doc::Pod(Deserialize::deserialize(rest)?),
        K::EndpointSlice => Doc::EndpointSlice(Deserialize::deserialize(rest)?),
        K::ServiceEntry => Doc::ServiceEntry(Deserialize::deserialize(rest)?),
        K::WorkloadEntry => Doc::WorkloadEntry(Deserialize::deserialize(rest)?),
        K::VirtualService => Doc::VirtualService(Deserialize::deserialize(rest)?),
        K::DestinationRule => Doc::DestinationRule(Deserialize::deserialize(rest)?),
        K::HTTPRoute => Doc::HttpRoute(Deserialize::deserialize(rest)?),
        K::GRPCRoute => Doc::GrpcRoute(Deserialize::deserialize(rest)?),
        K::TCPRoute => Doc::TcpRoute(Deserialize::deserialize(rest)?),
        _ => unreachable!("only kinds `direct` accepts"),
    };
    let head = Head {
        api_version: Some(api_version),
        kind: Some(kind_name),
        metadata: metadata.unwrap_or_default(),
    };
    Ok(Read::Typed(head, doc))
}

/// The rest of a document's top-level map, as the typed document's map;
/// `metadata` is taken out on the way for the head.
struct Rest<'m, A> {
    map: A,
    first: Option<String>,
    metadata: &'m mut Option<Meta>,
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Rest<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Rest<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let key = match self.first.take() {
                Some(k) => k,
                None => match self.map.next_key::<String>()? {
                    Some(k) => k,
                    None => return Ok(None),
                },
            };
            match key.as_str() {
                "metadata" if self.metadata.is_none() => {
                    let meta = self.map.next_value_seed(StrictSeed(PhantomData::<Meta>))?;
                    *self.metadata = Some(meta);
                }
                // A repeated head key: `Value` keeps the last one; leave that
                // to it.
                "metadata" | "apiVersion" | "kind" => {
                    return Err(de::Error::custom(format!("repeated key {key}")))
                }
                _ => {
                    let key = de::value::StringDeserializer::<A::Error>::new(key);
                    return seed.deserialize(key).map(Some);
                }
            }
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(StrictSeed(seed))
    }
}
