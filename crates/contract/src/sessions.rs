//! `ConsoleSessionStore`: console sessions found by the keyed hash of their token, ended at
//! sign-out and purged after expiry.

use std::sync::Arc;

use chrono::Duration;

use mandate_domain::now;
use mandate_domain::ports::Store;
use mandate_domain::sessions::ConsoleSession;

async fn console_sessions_are_found_by_token_hash_ended_and_purged(store: Arc<dyn Store>) {
    let session = |token_hash: &str, expires_at| ConsoleSession {
        token_hash: token_hash.into(),
        key_hash: format!("key-of-{token_hash}"),
        created_at: now() - Duration::hours(1),
        expires_at,
    };
    let live = session("live", now() + Duration::hours(1));
    let ended = session("ended", now() - Duration::minutes(1));
    let signed_out = session("signed-out", now() + Duration::hours(1));
    for one in [&live, &ended, &signed_out] {
        store.insert_console_session(one).await.unwrap();
    }
    assert_eq!(
        store.console_session("live").await.unwrap(),
        Some(live.clone())
    );
    assert_eq!(store.console_session("ended").await.unwrap(), Some(ended));
    assert_eq!(store.console_session("unknown").await.unwrap(), None);

    assert!(store.delete_console_session("signed-out").await.unwrap());
    assert!(!store.delete_console_session("signed-out").await.unwrap());
    assert_eq!(store.console_session("signed-out").await.unwrap(), None);

    assert_eq!(store.purge_console_sessions(now()).await.unwrap(), 1);
    assert_eq!(store.console_session("ended").await.unwrap(), None);
    assert_eq!(store.console_session("live").await.unwrap(), Some(live));
}
case!(console_sessions_are_found_by_token_hash_ended_and_purged);
