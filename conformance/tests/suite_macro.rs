//! `suite!(ctor, teardown)` on the reference store: one test per case, teardown after each.

mod support;

use std::sync::Arc;

use session_core::Storage;

/// Deletes every session the case left and checks the store is empty afterwards, which also shows
/// that teardown gets the store the case used.
async fn teardown(store: Arc<dyn Storage>) {
    let mut cursor: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let page = store.scan(cursor.as_deref(), 100).await.expect("scan");
        ids.extend(page.ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for id in &ids {
        store.remove_all(id).await.expect("remove_all");
    }
    let left = store.scan(None, 100).await.expect("scan");
    assert!(
        left.ids.is_empty(),
        "teardown left {} sessions",
        left.ids.len()
    );
}

session_conformance::suite!(support::reference, teardown);
