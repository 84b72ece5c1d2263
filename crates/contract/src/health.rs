//! `Health`: the store answers.

use std::sync::Arc;

use mandate_domain::ports::Store;

async fn health_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}
case!(health_answers);
