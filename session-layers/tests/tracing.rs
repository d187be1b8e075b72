//! The tracing layer opens one span per driver call with driver, operation, outcome, duration
//! and a session tag, and never records the session id.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::{ChangeSet, SessionId, Storage, Value};
use session_layers::{SPAN_NAME, TracingLayer};
use session_memory::MemoryStore;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Field names and values, as text.
type FieldMap = BTreeMap<String, String>;
/// A span's name and fields, by span id.
type Spans = BTreeMap<u64, (String, FieldMap)>;
/// An event's parent span, level and fields.
type Events = Vec<(Option<u64>, String, FieldMap)>;

/// The spans and events a test saw.
#[derive(Clone, Default)]
struct Captured {
    spans: Arc<Mutex<Spans>>,
    events: Arc<Mutex<Events>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'l> LookupSpan<'l>> tracing_subscriber::Layer<S> for Captured {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_owned();
        self.spans
            .lock()
            .unwrap()
            .insert(id.into_u64(), (name, fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let parent = event
            .parent()
            .cloned()
            .or_else(|| ctx.current_span().id().cloned())
            .map(|id| id.into_u64());
        let level = event.metadata().level().to_string();
        self.events.lock().unwrap().push((parent, level, fields));
    }
}

#[test]
fn every_call_gets_a_span_with_its_fields_and_never_the_id() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MemoryStore::new().layer(TracingLayer::new());
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);
    rt.block_on(async {
        store
            .set(&id, "k", Value::encode(&1).unwrap(), ttl)
            .await
            .unwrap();
        store.get(&id, "k").await.unwrap();
        store.load(&id).await.unwrap();
        store.apply(&id, ChangeSet::default(), ttl).await.unwrap();
        store.index_add("alice", &id, ttl).await.unwrap();
        store.remove_all(&id).await.unwrap();
        // A call that fails: an invalid scan cursor.
        assert!(store.scan(Some("not a cursor!"), 10).await.is_err());
    });

    let spans = captured.spans.lock().unwrap().clone();
    let ours: Vec<_> = spans
        .iter()
        .filter(|(_, (name, _))| name == SPAN_NAME)
        .collect();
    let ops: Vec<&str> = ours.iter().map(|(_, (_, f))| f["op"].as_str()).collect();
    assert_eq!(
        ops,
        [
            "set",
            "get",
            "load",
            "apply",
            "index_add",
            "remove_all",
            "scan"
        ],
        "one span per call, in order"
    );
    let mut tags = Vec::new();
    for (_, (_, fields)) in &ours {
        assert_eq!(fields["driver"], "memory", "{fields:?}");
        assert!(
            fields.contains_key("duration_us"),
            "no duration: {fields:?}"
        );
        for value in fields.values() {
            assert!(
                !value.contains(id.as_str()),
                "the raw id was recorded: {fields:?}"
            );
        }
        if fields["op"] == "scan" {
            assert_eq!(fields["outcome"], "invalid_input", "{fields:?}");
            assert!(!fields.contains_key("session"), "scan names no session");
        } else {
            assert_eq!(fields["outcome"], "ok", "{fields:?}");
            tags.push(fields["session"].clone());
        }
    }
    assert!(
        tags.iter().all(|t| t.len() == 8 && *t == tags[0]),
        "{tags:?}"
    );

    // The failure is logged once, at WARN, inside the scan span, with the error's message.
    let scan_span = ours
        .iter()
        .find(|(_, (_, f))| f["op"] == "scan")
        .map(|(id, _)| **id);
    let events = captured.events.lock().unwrap().clone();
    let warnings: Vec<_> = events
        .iter()
        .filter(|(_, level, _)| level == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert_eq!(
        warnings[0].0, scan_span,
        "the warning is inside the failed call's span"
    );
    assert!(
        warnings[0].2["error"].contains("cursor"),
        "{:?}",
        warnings[0]
    );
}
