//! Small helpers shared by `run_all` and the generated tests.

/// The panic message of a failed case, or why it did not finish.
pub(crate) fn join_error_message(join_err: tokio::task::JoinError) -> String {
    if !join_err.is_panic() {
        return format!("cancelled: {join_err}");
    }
    let payload = join_err.into_panic();
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a non-text payload".to_string()
    }
}

/// Whether a case's panic payload reports a machine stall ([`crate::STALL_MARKER`]).
pub(crate) fn is_stall(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
        *s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        return false;
    };
    text.contains(crate::STALL_MARKER)
}
