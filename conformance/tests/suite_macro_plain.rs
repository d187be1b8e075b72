//! `suite!(ctor)` (no teardown) on the reference store: one test per case.

mod support;

use session_conformance::Fixture;

async fn new_store() -> Fixture {
    support::reference().await
}

session_conformance::suite!(new_store);
