//! `keyed_crash`: on a cluster of its own, every call carries an `Idempotency-Key` and is
//! retried until a 2xx; the server crashes right after one payment's commit, then is SIGKILLed.

use super::*;

/// The `Idempotency-Key` whose call the first server crashes after committing.
const CRASH_AFTER_COMMIT_ENV: &str = "MANDATE_FAULT_CRASH_AFTER_COMMIT";

/// A load of keyed clients: operation `i` creates a customer, a request for it, a payment link
/// and a payment of `1 + i % 4`, each call with its own `Idempotency-Key`.
struct KeyedLoad<'a> {
    client: Client<'a>,
    parties: &'a [Party],
    operations: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Per operation, what its clients were answered.
    acknowledged: Mutex<BTreeMap<usize, Acknowledged>>,
}

/// An operation of a [`KeyedLoad`], every call of it answered 2xx.
struct Acknowledged {
    request_id: String,
    customer_id: String,
    link_url: String,
    payment: KeyedAnswer,
}

impl KeyedLoad<'_> {
    async fn run(&self, in_flight: usize) {
        futures_util::future::join_all((0..in_flight).map(|_| async {
            loop {
                let i = self.next.fetch_add(1, Ordering::SeqCst);
                if i >= self.operations {
                    return;
                }
                self.operation(i).await;
                self.done.fetch_add(1, Ordering::SeqCst);
            }
        }))
        .await;
    }

    async fn keyed(&self, i: usize, path: &str, key: &str, body: Value) -> Option<KeyedAnswer> {
        let token = &self.parties[i % self.parties.len()].tenant.destination_key;
        self.client.send(i, token, path, key, &body).await
    }

    async fn operation(&self, i: usize) {
        let customer = self
            .keyed(
                i,
                "/v1/customers",
                &format!("customer-{i}"),
                json!({"name": format!("faults-{i}")}),
            )
            .await;
        let Some(customer) = customer else { return };
        let customer_id = customer.body["id"].as_str().unwrap_or_default().to_owned();
        let request = json!({"direction": "incoming", "amount": "10", "currency": "USD",
            "reference": format!("op-{i}"), "customer_id": customer_id});
        let Some(request) = self
            .keyed(i, "/v1/requests", &format!("request-{i}"), request)
            .await
        else {
            return;
        };
        let request_id = request.body["id"].as_str().unwrap_or_default().to_owned();
        let links = format!("/v1/requests/{request_id}/payment-links");
        let Some(link) = self.keyed(i, &links, &format!("link-{i}"), json!({})).await else {
            return;
        };
        let payment = json!({"amount": (1 + i % 4).to_string(), "reference": format!("pay-{i}")});
        let payments = format!("/v1/requests/{request_id}/payments");
        let Some(paid) = self
            .keyed(i, &payments, &format!("payment-{i}"), payment)
            .await
        else {
            return;
        };
        let url = link.body["url"].as_str().unwrap_or_default().to_owned();
        self.acknowledged.lock().unwrap().insert(
            i,
            Acknowledged {
                request_id,
                customer_id,
                link_url: url,
                payment: paid,
            },
        );
    }
}

/// Counts by the first column of `query`'s rows (text, then a count).
async fn counts(client: &tokio_postgres::Client, query: &str) -> BTreeMap<String, i64> {
    client
        .query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash point: cargo xtask test (or faults) builds it"
)]
async fn keyed_crash() {
    let scale = scale();
    let started = Instant::now();
    // A cluster of its own: nothing else's load or state is in the audit's way.
    let cluster = support::own_cluster();
    let dir = TempDir::new();
    let command = || server_command(&dir, cluster.url(), &[]);
    // The first server dies at the worst moment of one payment: committed, not answered.
    let crashed_operation = 3;
    let crash_key = format!("payment-{crashed_operation}");
    let mut first = command();
    first.env(CRASH_AFTER_COMMIT_ENV, &crash_key);
    let mut server = Server::start_with(first, &dir.0).await;
    let parties = two_parties(&server.api()).await;
    let target = Target::new(vec![server.base.clone()]);
    let load = KeyedLoad {
        client: Client::new(&target),
        parties: &parties,
        operations: scale.operations,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        acknowledged: Mutex::new(BTreeMap::new()),
    };
    let crashes = async {
        // The crash point fires by itself; the server is replaced once it is gone.
        let status = loop {
            if let Some(status) = server.exit_status() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        target.set(Vec::new());
        let mut second = Server::start_with(command(), &dir.0).await;
        target.set(vec![second.base.clone()]);
        // Then SIGKILL under load, anywhere.
        while load.done.load(Ordering::SeqCst) < scale.operations * 6 / 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        target.set(Vec::new());
        second.stop();
        let third = Server::start_with(command(), &dir.0).await;
        target.set(vec![third.base.clone()]);
        (third, status)
    };
    // The last server lives until the audit is done.
    let ((_server, crash_status), ()) = tokio::join!(crashes, load.run(scale.in_flight));

    let mut outcome = Outcome {
        scenario: "keyed_crash",
        operations: load.done.load(Ordering::SeqCst),
        lost: 0,
        duplicated: 0,
        leaked: 0,
        notes: Vec::new(),
        problems: load.client.seen.lock().unwrap().unexpected.clone(),
    };
    #[cfg(unix)]
    outcome.check(
        std::os::unix::process::ExitStatusExt::signal(&crash_status) == Some(6),
        format!("the first server did not crash at its crash point: {crash_status}"),
    );
    let acknowledged = std::mem::take(&mut *load.acknowledged.lock().unwrap());
    outcome.check(
        acknowledged.len() == scale.operations,
        format!(
            "{} of {} operations acknowledged",
            acknowledged.len(),
            scale.operations
        ),
    );
    match acknowledged.get(&crashed_operation) {
        Some(Acknowledged { payment: paid, .. }) => outcome.check(
            paid.replayed && paid.attempts > 1,
            format!(
                "the payment committed before the crash was not replayed (attempts {}, replayed {})",
                paid.attempts, paid.replayed
            ),
        ),
        None => outcome.problems.push("the crashed operation was not acknowledged".into()),
    }
    // Every acknowledged change exactly once, nothing without an acknowledgement, amounts equal
    // to the distinct keys' payments, one event per change.
    let client = support::connect(cluster.url()).await;
    let customers = counts(
        &client,
        "SELECT name, count(*) FROM customers GROUP BY name",
    )
    .await;
    let requests = counts(
        &client,
        "SELECT reference || ' ' || id || ' ' || customer_id || ' ' || amount_paid, count(*) \
         FROM payment_requests GROUP BY 1",
    )
    .await;
    let links = counts(
        &client,
        "SELECT r.reference, count(l.id) FROM payment_requests r \
         LEFT JOIN payment_links l ON l.request_id = r.id GROUP BY 1",
    )
    .await;
    let payments = counts(
        &client,
        "SELECT r.reference, count(p.id) FROM payment_requests r \
         LEFT JOIN payments p ON p.request_id = r.id GROUP BY 1",
    )
    .await;
    let events = counts(
        &client,
        "SELECT event_type, count(*) FROM events GROUP BY 1",
    )
    .await;
    let n = scale.operations as i64;
    outcome.check(
        customers.len() == scale.operations && customers.values().all(|&c| c == 1),
        format!(
            "customers: {} names for {n} operations, {customers:?}",
            customers.len()
        ),
    );
    outcome.check(
        requests.len() == scale.operations,
        format!("{} requests for {n} operations", requests.len()),
    );
    for (i, operation) in &acknowledged {
        let (request_id, customer_id) = (&operation.request_id, &operation.customer_id);
        let row = format!("op-{i} {request_id} {customer_id} {}", 1 + i % 4);
        outcome.check(
            requests.get(&row) == Some(&1),
            format!("op-{i}: the acknowledged request, customer and amount paid are not stored once as {row}"),
        );
        let reference = format!("op-{i}");
        outcome.check(
            links.get(&reference) == Some(&1),
            format!("{reference}: {:?} links", links.get(&reference)),
        );
        outcome.check(
            payments.get(&reference) == Some(&1),
            format!("{reference}: {:?} payments", payments.get(&reference)),
        );
        outcome.check(
            operation.link_url.contains("/pay/"),
            format!("{reference}: no link url"),
        );
    }
    for kind in [
        "customer.created",
        "payment_request.created",
        "payment_request.partially_paid",
    ] {
        let count = events.get(kind).copied().unwrap_or_default();
        outcome.check(count == n, format!("{count} {kind} events for {n} changes"));
        outcome.duplicated += usize::try_from(count - n).unwrap_or(0);
    }
    outcome.lost = scale.operations - acknowledged.len();
    let replayed = acknowledged
        .values()
        .filter(|operation| operation.payment.replayed)
        .count();
    outcome.notes.push(format!(
        "crash after the commit of {crash_key} ({crash_status}), then SIGKILL at 60 %; \
         {replayed} payments answered by a replay; scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    outcome.report();
}
