//! `receiver_outage`: both receivers refuse connections for a while; a third endpoint answers
//! 410 and must be disabled.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn receiver_outage() {
    let scale = scale();
    let started = Instant::now();
    let database = FreshDatabase::create().await;
    let dir = TempDir::new();
    let server = Server::start_with(server_command(&dir, &database.url, &[]), &dir.0).await;
    let api = server.api();
    let mut proxies = Vec::new();
    let mut parties = Vec::new();
    for _ in 0..2 {
        let receiver = Receiver::start(&[]).await;
        let proxy = Proxy::start(address_of(&receiver.url).unwrap()).await;
        let url = proxy.rewrite(&receiver.url);
        parties.push(party(&api, receiver, &url).await);
        proxies.push(proxy);
    }
    // A third endpoint, of the first tenant, for cancellations, whose receiver answers 410
    // Gone: the first cancellation disables it, the second is not sent to it.
    let gone = Receiver::start(&[410]).await;
    let key = parties[0].tenant.destination_key.clone();
    let gone_endpoint = endpoint(
        &api,
        &parties[0].tenant,
        &gone.url,
        "payment_request.cancelled",
    )
    .await;
    cancel_a_request(&api, &key).await;
    let disabled = wait_until(SETTLE, || async {
        let state = api
            .get(&format!("/v1/webhook-endpoints/{gone_endpoint}"), &key)
            .await;
        state.body["enabled"] == false
    })
    .await;
    // The healthy endpoint has that request's two events before its receiver goes down.
    let first = &parties[0].receiver;
    wait_until(SETTLE, || async { first.event_ids().len() == 2 }).await;

    let received = || {
        parties
            .iter()
            .map(|p| p.receiver.received().len())
            .sum::<usize>()
    };
    let before_cut = received();
    for proxy in &mut proxies {
        proxy.cut().await;
    }
    let down_at = Instant::now();
    let target = Target::new(vec![server.base.clone()]);
    let load = Load::new(&target, &parties, scale.operations / 2, scale.in_flight);
    load.run().await;
    cancel_a_request(&api, &key).await;
    tokio::time::sleep(scale.receiver_outage.saturating_sub(down_at.elapsed())).await;
    let received_while_down = received() - before_cut;
    for proxy in &mut proxies {
        proxy.open().await;
    }
    let back_at = Instant::now();
    let mut outcome = audit(&api, &load, "receiver_outage").await;
    let all_in = back_at.elapsed();
    let gone_calls = gone.received().len();
    outcome.notes.insert(
        0,
        format!(
            "receivers refusing connections for {} s ({received_while_down} deliveries got \
             through meanwhile), every event {:.1} s after they returned; an endpoint \
             answering 410 {} after one call, called {gone_calls} time(s) in all",
            scale.receiver_outage.as_secs(),
            all_in.as_secs_f64(),
            if disabled { "disabled" } else { "NOT disabled" },
        ),
    );
    outcome.notes.push(format!(
        "scale {}, {:.0} s",
        scale.name,
        started.elapsed().as_secs_f64()
    ));
    outcome.check(
        received_while_down == 0,
        "deliveries got through a receiver that was down",
    );
    outcome.check(disabled, "the endpoint answering 410 was not disabled");
    outcome.check(gone_calls == 1, "a disabled endpoint was called again");
    outcome.report();
}

/// Creates a request of the caller's destination and cancels it.
async fn cancel_a_request(api: &Api, key: &str) {
    let created = api
        .post(
            "/v1/requests",
            key,
            json!({"direction": "incoming", "amount": "5", "currency": "USD"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let cancelled = api
        .send(
            "POST",
            &format!("/v1/requests/{id}/cancel"),
            Some(key),
            None,
            &[],
        )
        .await;
    assert!(cancelled.status < 300, "{}", cancelled.body);
}
