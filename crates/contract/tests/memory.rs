//! The store contract on the in-memory reference adapter: every case on a fresh store.

use std::sync::Arc;

use mandate_contract::memory::MemoryStore;
use mandate_domain::ports::Store;

fn main() {
    let arguments = libtest_mimic::Arguments::from_args();
    let trials = mandate_contract::trials("memory", || async {
        // Nothing to clean up afterwards.
        (Arc::new(MemoryStore::new()) as Arc<dyn Store>, ())
    });
    libtest_mimic::run(&arguments, trials).exit();
}
