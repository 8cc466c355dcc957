//! docs/config.md against the keys serde itself accepts: every key of every schema is documented,
//! and every documented key exists.
//!
//! The keys come from tracing each schema's `Deserialize`: a deserializer that answers every
//! `deserialize_struct` with its field names, descends into each field's value, and records the
//! dotted path of every key on the way. A value only serde's `deserialize_any` can read (an
//! untagged or internally tagged enum) is recorded as an opaque key and skipped on the next pass,
//! so the rest of its struct is still traced.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use eesmm::evaluate::{EvalConfig, ProbeConfig};
use eesmm::finetune::FinetuneConfig;
use eesmm::model::SwinConfig;
use eesmm::pretrain::PretrainConfig;
use eesmm::stages::{ExportStage, InferStage, VerifyStage};
use serde::de::value::{Error, StrDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

#[derive(Default)]
struct Trace {
    /// Every key path met, e.g. `objective.augment.hflip`.
    keys: BTreeSet<String>,
    /// Keys whose value the trace cannot look into (read through `deserialize_any`).
    opaque: BTreeSet<String>,
}

/// The keys `T` accepts, as dotted paths, and those of them that are opaque.
fn accepted_keys<T: DeserializeOwned>() -> Trace {
    let trace = RefCell::new(Trace::default());
    loop {
        let opaque = trace.borrow().opaque.len();
        let _ = T::deserialize(Tracer {
            trace: &trace,
            path: String::new(),
        });
        if trace.borrow().opaque.len() == opaque {
            return trace.into_inner();
        }
    }
}

fn join(path: &str, key: &str) -> String {
    match path {
        "" => key.to_string(),
        _ => format!("{path}.{key}"),
    }
}

struct Tracer<'a> {
    trace: &'a RefCell<Trace>,
    path: String,
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        self.trace.borrow_mut().opaque.insert(self.path.clone());
        Err(de::Error::custom(format!("{}: opaque", self.path)))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(1)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(1)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.5)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("x")
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Elements(self, 1))
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Elements(self, len))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Fields::new(self, &[]))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields::new(self, fields))
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(Variant(self, variants[0]))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! { i128 u128 }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_char('x')
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bytes(b"")
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(Elements(self, len))
    }
}

/// The fields of a struct as map entries, each value traced at its own path; opaque ones are
/// left out (serde then reports them missing, after every other field was traced).
struct Fields<'a> {
    tracer: Tracer<'a>,
    fields: Vec<&'static str>,
    next: usize,
}

impl<'a> Fields<'a> {
    fn new(tracer: Tracer<'a>, fields: &'static [&'static str]) -> Self {
        let mut trace = tracer.trace.borrow_mut();
        let mut kept = Vec::new();
        for field in fields {
            let path = join(&tracer.path, field);
            if !trace.opaque.contains(&path) {
                kept.push(*field);
            }
            trace.keys.insert(path);
        }
        drop(trace);
        Self {
            tracer,
            fields: kept,
            next: 0,
        }
    }
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<Error> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let path = join(&self.tracer.path, self.fields[self.next]);
        self.next += 1;
        seed.deserialize(Tracer {
            trace: self.tracer.trace,
            path,
        })
    }
}

/// `len` elements, each traced at the sequence's own path.
struct Elements<'a>(Tracer<'a>, usize);

impl<'de> SeqAccess<'de> for Elements<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.1 == 0 {
            return Ok(None);
        }
        self.1 -= 1;
        seed.deserialize(Tracer {
            trace: self.0.trace,
            path: self.0.path.clone(),
        })
        .map(Some)
    }
}

/// An enum's first variant.
struct Variant<'a>(Tracer<'a>, &'static str);

impl<'de, 'a> EnumAccess<'de> for Variant<'a> {
    type Error = Error;
    type Variant = Tracer<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Tracer<'a>), Error> {
        let name: StrDeserializer<Error> = self.1.into_deserializer();
        Ok((seed.deserialize(name)?, self.0))
    }
}

impl<'de> VariantAccess<'de> for Tracer<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Elements(self, len))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields::new(self, fields))
    }
}

/// The keys in the tables of docs/config.md, by section heading.
fn documented_keys() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut heading = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            heading = h.to_string();
        } else if let Some(rest) = line.strip_prefix("| `") {
            let key = rest.split('`').next().unwrap().to_string();
            sections.entry(heading.clone()).or_default().insert(key);
        }
    }
    sections
}

/// A documented key is real when serde accepts it, or when it lies inside an opaque key's value
/// (the variants' keys of `objective.decoder`, say).
fn unknown_keys<'a>(documented: &'a BTreeSet<String>, trace: &Trace) -> Vec<&'a String> {
    documented
        .iter()
        .filter(|key| {
            !trace.keys.contains(*key)
                && !trace
                    .opaque
                    .iter()
                    .any(|o| key.starts_with(&format!("{o}.")))
        })
        .collect()
}

#[test]
fn config_reference_covers_every_key() {
    let sections = documented_keys();
    let schemas: Vec<(&str, Trace)> = vec![
        ("Model preset", accepted_keys::<SwinConfig>()),
        ("Stage kind `pretrain`", accepted_keys::<PretrainConfig>()),
        ("Stage kind `finetune`", accepted_keys::<FinetuneConfig>()),
        ("Stage kind `eval`", accepted_keys::<EvalConfig>()),
        (
            "Stage kinds `linear_probe` and `knn`",
            accepted_keys::<ProbeConfig>(),
        ),
        ("Stage kind `export`", accepted_keys::<ExportStage>()),
        ("Stage kind `verify`", accepted_keys::<VerifyStage>()),
        ("Stage kind `infer`", accepted_keys::<InferStage>()),
    ];
    for (heading, trace) in &schemas {
        let documented = sections
            .get(*heading)
            .unwrap_or_else(|| panic!("docs/config.md has no section '## {heading}'"));
        let missing: Vec<&String> = trace.keys.difference(documented).collect();
        assert!(
            missing.is_empty(),
            "{heading}: keys serde accepts but docs/config.md does not list: {missing:?} \
             (run python3 scripts/dev/config_reference.py)"
        );
        let unknown = unknown_keys(documented, trace);
        assert!(
            unknown.is_empty(),
            "{heading}: docs/config.md lists keys serde does not accept: {unknown:?}"
        );
    }
    // The trace sees nested keys, not only the top level (a tracer that stopped early would
    // pass the checks above with a short list).
    let pretrain = &schemas[1].1;
    for key in [
        "data.subset.images",
        "objective.augment.hflip",
        "train.log_every",
    ] {
        assert!(pretrain.keys.contains(key), "{key} not traced");
    }
    assert!(pretrain.opaque.contains("objective.decoder"));
    let pipeline = &sections["Pipeline file"];
    let top: BTreeSet<String> = eesmm::pipeline::resolve::TOP_KEYS
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(pipeline, &top, "docs/config.md's pipeline keys");
}
