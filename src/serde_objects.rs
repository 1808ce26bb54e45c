//! Nested JSON objects read as objects only.
//!
//! serde's derived `Deserialize` for a struct also accepts the array of its fields in order
//! (`{"limits": [null, null]}`), which the OpenAPI document does not allow and no user means.
//! Leaf module: the spec and the shaping types both use it, and it imports nothing of ours.

use serde::Deserialize;

/// A value that must be a JSON object: serde's derived `Deserialize` for a struct also takes the
/// array of its fields in order (`[null, null]`), which the schema does not allow.
pub fn map_only<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct MapOnly<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(MapOnly(std::marker::PhantomData))
}
