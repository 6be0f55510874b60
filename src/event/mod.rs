//! The event hookwire emits: its routing key, its envelope and its ids.

pub mod envelope;
pub mod id;

/// The routing key's fixed start: every key is `in.gen.<service>.<name>`.
pub const KEY_PREFIX: &str = "in.gen.";

/// The routing key `in.gen.<service>.<name>`, built in a reused buffer.
/// The envelope and the 200's body borrow its service and name from it.
#[derive(Debug, Clone, Default)]
pub struct RoutingKey {
    text: Vec<u8>,
    service_len: usize,
}

impl RoutingKey {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            text: Vec::with_capacity(capacity),
            service_len: 0,
        }
    }

    /// Sets the key for a service and name validated to `[A-Za-z0-9_-]`.
    ///
    /// # Panics
    /// When either is not ASCII (callers validate them first).
    pub fn set(&mut self, service: &[u8], name: &[u8]) {
        assert!(service.is_ascii() && name.is_ascii(), "unvalidated key");
        self.text.clear();
        self.text.extend_from_slice(KEY_PREFIX.as_bytes());
        self.text.extend_from_slice(service);
        self.text.push(b'.');
        self.text.extend_from_slice(name);
        self.service_len = service.len();
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: the prefix, a dot, and a service and name that `set`
        // checked are ASCII.
        unsafe { std::str::from_utf8_unchecked(&self.text) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    pub fn service(&self) -> &str {
        &self.as_str()[KEY_PREFIX.len()..KEY_PREFIX.len() + self.service_len]
    }

    pub fn name(&self) -> &str {
        &self.as_str()[KEY_PREFIX.len() + self.service_len + 1..]
    }
}

#[cfg(test)]
mod tests {
    use super::RoutingKey;

    #[test]
    fn key_parts() {
        let mut key = RoutingKey::default();
        key.set(b"affise", b"conversion");
        assert_eq!(key.as_str(), "in.gen.affise.conversion");
        assert_eq!((key.service(), key.name()), ("affise", "conversion"));
        key.set(b"a", b"b-c_d");
        assert_eq!((key.service(), key.name()), ("a", "b-c_d"));
    }
}
