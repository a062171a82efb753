//! The DingTalk client against the project's simulator of DingTalk: token expiry in both
//! styles, its QPS limit, its monthly quota, every fault it injects, and getsendresult.

mod client_fake;

use std::sync::Arc;
use std::time::Duration;

use client_fake::{Harness, Options, harness_for_app};
use dingtalk_exporter::dingtalk::{ApiFailure, DeliveryApi};
use dingtalk_exporter::simulator::{
    Behaviour, DEMO_AGENT_ID, DEMO_APP_KEY, DEMO_APP_SECRET, ExpiryStyle, FaultConfig, FaultKind,
    SimConfig, Simulator, Timeline,
};

async fn simulator(behaviour: Behaviour) -> Simulator {
    Simulator::start(SimConfig {
        behaviour,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

fn client(sim: &Simulator, options: Options) -> Harness {
    harness_for_app(sim.url(), DEMO_APP_KEY, DEMO_APP_SECRET, options)
}

/// Polling goes on across token expiry, whichever way DingTalk reports the expired token.
#[tokio::test]
async fn polling_survives_token_expiry_in_both_styles() {
    for expiry_style in [ExpiryStyle::Flat, ExpiryStyle::Wrapped] {
        let sim = simulator(Behaviour {
            expiry_style,
            ..Behaviour::default()
        })
        .await;
        let task_id = sim.add_task(DEMO_AGENT_ID, Timeline::slow());
        let h = client(&sim, Options::default());

        assert!(h.client.send_progress(DEMO_AGENT_ID, task_id).await.is_ok());
        assert_eq!(sim.expire_tokens(), 1);
        let progress = h.client.send_progress(DEMO_AGENT_ID, task_id).await;

        assert!(progress.is_ok(), "{expiry_style:?}: {progress:?}");
        let stats = sim.stats();
        assert_eq!(stats.calls.gettoken, 2, "{expiry_style:?}");
        assert_eq!(stats.token_rejections, 1, "{expiry_style:?}");
        assert_eq!(h.up(), 1);
    }
}

/// A burst of polls at the configured max QPS never draws a 90018 from the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_never_trips_the_qps_limit() {
    let sim = simulator(Behaviour {
        qps_limit: 5,
        ..Behaviour::default()
    })
    .await;
    let task_id = sim.add_task(DEMO_AGENT_ID, Timeline::slow());
    let h = Arc::new(client(
        &sim,
        Options {
            max_qps: 5,
            ..Options::default()
        },
    ));

    let calls: Vec<_> = (0..14)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.client.send_progress(DEMO_AGENT_ID, task_id).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    let stats = sim.stats();
    assert_eq!(stats.calls.getsendprogress, 14);
    assert_eq!(stats.qps_rejections, 0);
}

/// A task the simulator does not know is 40035 at once; its monthly quota gives 90020.
#[tokio::test]
async fn unknown_task_and_exhausted_quota() {
    let sim = simulator(Behaviour {
        monthly_quota: 2,
        ..Behaviour::default()
    })
    .await;
    let task_id = sim.add_task(DEMO_AGENT_ID, Timeline::slow());
    let h = client(&sim, Options::default());

    let unknown = h.client.send_progress(DEMO_AGENT_ID, task_id + 1).await;
    assert_eq!(unknown.unwrap_err().dingtalk_code(), Some(40035));
    assert!(h.client.send_progress(DEMO_AGENT_ID, task_id).await.is_ok());
    let exhausted = h.client.send_progress(DEMO_AGENT_ID, task_id).await;
    assert_eq!(exhausted.unwrap_err().dingtalk_code(), Some(90020));
    assert_eq!(h.gate.exhausted(), 1);
    assert_eq!(h.errors("getsendprogress", "90020"), 1);
}

/// Each injected fault lands in its failure class and its errcode bucket.
#[tokio::test]
async fn every_fault_kind_is_classified() {
    let sim = simulator(Behaviour::default()).await;
    let task_id = sim.add_task(DEMO_AGENT_ID, Timeline::slow());
    for (kind, bucket) in [
        (FaultKind::Html502, "http"),
        (FaultKind::Punish, "ip_banned"),
        (FaultKind::PunishHtml, "ip_banned"),
        (FaultKind::Busy, "-1"),
        (FaultKind::Truncated, "decode"),
        (FaultKind::Slow, "transport"),
        (FaultKind::Drop, "transport"),
    ] {
        let h = client(
            &sim,
            Options {
                timeout: Duration::from_millis(300),
                ..Options::default()
            },
        );
        sim.set_faults(FaultConfig::off()).unwrap();
        h.client
            .authenticate()
            .await
            .expect("a token before the faults");
        sim.set_faults(FaultConfig {
            slow_delay_ms: 1_000,
            ..FaultConfig::always(kind)
        })
        .unwrap();

        let failure = h
            .client
            .send_progress(DEMO_AGENT_ID, task_id)
            .await
            .unwrap_err();

        assert_eq!(failure.errcode_label().as_deref(), Some(bucket), "{kind:?}");
        assert!(h.errors("getsendprogress", bucket) >= 1, "{kind:?}");
        if bucket == "ip_banned" {
            assert!(matches!(failure, ApiFailure::IpBanned { .. }));
        }
    }
    sim.set_faults(FaultConfig::off()).unwrap();
}

/// getsendresult's counts match what the simulator's answer lists.
#[tokio::test]
async fn recipient_counts_match_the_simulator() {
    let sim = simulator(Behaviour::default()).await;
    let timeline = Timeline {
        duration_ms: 1,
        invalid_depts: 2,
        ..Timeline::default()
    };
    let task_id = sim.add_task(DEMO_AGENT_ID, timeline.clone());
    let h = client(&sim, Options::default());

    let counts = h.client.send_result(DEMO_AGENT_ID, task_id).await;
    let expected = timeline.counts_at(i64::MAX / 2);
    assert_eq!(
        counts,
        Ok(dingtalk_exporter::dingtalk::SendResult::Recipients(
            expected
        ))
    );
    assert!(expected.forbidden > 0 && expected.read > 0 && expected.invalid > 2);
}
