//! The backend contract, for the adapters' tests in other crates (the
//! DynamoDB one runs against an emulator from the integration tests).

use super::backend::{Entry, LinkBackend};
use std::sync::Arc;

/// The behaviour every backend must have.
pub async fn backend_contract(b: Arc<dyn LinkBackend>) {
    let e = |pk: &str, sk: &str, v: &str, exp: Option<i64>| Entry {
        pk: pk.into(),
        sk: sk.into(),
        value: v.into(),
        expires_at: exp,
    };
    assert_eq!(b.get("a", "-", 100).await.unwrap(), None);
    b.put(&e("a", "-", "1", None)).await.unwrap();
    assert_eq!(b.get("a", "-", 100).await.unwrap().unwrap().value, "1");
    // put_new refuses a live entry, takes an expired one's place.
    assert!(!b.put_new(&e("a", "-", "2", None), 100).await.unwrap());
    b.put(&e("x", "-", "old", Some(50))).await.unwrap();
    assert_eq!(
        b.get("x", "-", 100).await.unwrap(),
        None,
        "expired reads absent"
    );
    assert!(b
        .put_new(&e("x", "-", "new", Some(500)), 100)
        .await
        .unwrap());
    assert_eq!(b.get("x", "-", 100).await.unwrap().unwrap().value, "new");
    // query: prefix, order, limit, expiry.
    for (sk, exp) in [
        ("s/2", None),
        ("s/1", None),
        ("s/3", Some(10)),
        ("t/1", None),
    ] {
        b.put(&e("p", sk, sk, exp)).await.unwrap();
    }
    let got: Vec<String> = b
        .query("p", "s/", 10, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.sk)
        .collect();
    assert_eq!(got, ["s/1", "s/2"]);
    assert_eq!(b.query("p", "", 2, 100).await.unwrap().len(), 2);
    b.delete("p", "s/1").await.unwrap();
    assert_eq!(b.query("p", "s/", 10, 100).await.unwrap().len(), 1);
}

#[cfg(feature = "aws")]
/// Creates a link store table as `template.yaml`'s `LinksTable` has it
/// (string keys `pk`/`sk`, on demand, TTL on `expires_at`) in the emulator;
/// returns its name.
pub async fn create_dynamo_table(conf: &aws_config::SdkConfig, name: &str) -> String {
    use super::dynamo::{PK, SK, TTL_ATTRIBUTE};
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let ddb = aws_sdk_dynamodb::Client::new(conf);
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(kind)
            .build()
            .unwrap()
    };
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK))
        .attribute_definitions(attr(SK))
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range))
        .send()
        .await
        .expect("create the links table in the emulator");
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("enable TTL in the emulator");
    name.to_owned()
}
