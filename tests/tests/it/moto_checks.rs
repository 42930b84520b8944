//! What the emulator really does. The ingress tests lean on moto for FIFO
//! deduplication and for AWSPREVIOUS, the reconciler's watermark store on
//! SSM `PutParameter` / `GetParameter`; these tests check them directly, so a
//! moto regression shows up here and not as a puzzling failure elsewhere.

use relay_tests::{aws_endpoint, create_fifo_queue, drain, sdk_config, unique};

#[tokio::test]
async fn fifo_dedup_is_honoured() {
    // given a FIFO queue
    let Some(moto) = aws_endpoint() else { return };
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto).await);
    let url = create_fifo_queue(&sqs, &unique("dedup")).await;
    // when two messages share a dedup id and a third does not
    for body in ["first", "second"] {
        sqs.send_message()
            .queue_url(&url)
            .message_group_id("g")
            .message_deduplication_id("same-delivery")
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(&url)
        .message_group_id("g")
        .message_deduplication_id("other")
        .message_body("third")
        .send()
        .await
        .unwrap();
    // then the repeat is dropped
    let bodies: Vec<_> = drain(&sqs, &url)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["first", "third"]);
}

#[tokio::test]
async fn awsprevious_follows_rotation() {
    // given a secret
    let Some(moto) = aws_endpoint() else { return };
    let sm = aws_sdk_secretsmanager::Client::new(&sdk_config(&moto).await);
    let id = unique("rot");
    let get = |stage: &'static str| {
        let sm = sm.clone();
        let id = id.clone();
        async move {
            sm.get_secret_value()
                .secret_id(id)
                .version_stage(stage)
                .send()
                .await
                .map(|o| o.secret_string.unwrap())
        }
    };
    // when it is created and rotated twice
    sm.create_secret()
        .name(&id)
        .secret_string("v1")
        .send()
        .await
        .unwrap();
    // then AWSPREVIOUS follows the rotation
    assert!(
        get("AWSPREVIOUS").await.is_err(),
        "no previous version before the first rotation"
    );
    for (new, old) in [("v2", "v1"), ("v3", "v2")] {
        sm.put_secret_value()
            .secret_id(&id)
            .secret_string(new)
            .send()
            .await
            .unwrap();
        let current = get("AWSCURRENT").await.unwrap();
        let previous = get("AWSPREVIOUS").await.unwrap();
        assert_eq!((current.as_str(), previous.as_str()), (new, old));
    }
}

/// What `SsmStore` relies on: a missing parameter is `ParameterNotFound`;
/// `Overwrite: true` creates a parameter that does not exist and replaces one
/// that does (a new version); without it an existing one is refused, so the
/// flag is honoured rather than ignored.
#[tokio::test]
async fn ssm_put_overwrite_and_get() {
    use aws_sdk_ssm::operation::get_parameter::GetParameterError;
    use aws_sdk_ssm::operation::put_parameter::PutParameterError;
    use aws_sdk_ssm::types::{ParameterTier, ParameterType};
    // given a parameter name
    let Some(moto) = aws_endpoint() else { return };
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&moto).await);
    let name = format!("/relay-tests/{}/jira", unique("ssm"));
    let get = || async {
        ssm.get_parameter()
            .name(&name)
            .send()
            .await
            .map(|o| o.parameter.unwrap())
    };
    let put = |value: &'static str, overwrite: bool| {
        ssm.put_parameter()
            .name(&name)
            .value(value)
            .r#type(ParameterType::String)
            .tier(ParameterTier::Standard)
            .overwrite(overwrite)
            .send()
    };
    // when it is read before any put
    let missing = get().await.unwrap_err();
    // then not found
    assert!(
        matches!(
            missing.as_service_error(),
            Some(GetParameterError::ParameterNotFound(_))
        ),
        "{missing:?}"
    );
    // when it is put, put again with overwrite, and put without;
    // then versions count up and the refused put changes nothing
    assert_eq!(put("v1", true).await.unwrap().version, 1);
    let p = get().await.unwrap();
    assert_eq!((p.value.as_deref(), p.version), (Some("v1"), 1));
    assert_eq!(p.r#type, Some(ParameterType::String));
    assert_eq!(put("v2", true).await.unwrap().version, 2);
    let p = get().await.unwrap();
    assert_eq!((p.value.as_deref(), p.version), (Some("v2"), 2));
    let refused = put("v3", false).await.unwrap_err();
    assert!(
        matches!(
            refused.as_service_error(),
            Some(PutParameterError::ParameterAlreadyExists(_))
        ),
        "{refused:?}"
    );
    assert_eq!(get().await.unwrap().value.as_deref(), Some("v2"));
}
