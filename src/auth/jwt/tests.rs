//! Unit tests of `jwt`.

use super::*;

#[test]
fn device_tokens_and_access_tokens_are_never_each_other() {
    let keys = keys(KeyAlgorithm::Es256);
    let user = Uuid::new_v4();
    let now = Utc::now();
    let device = keys.issue_device(user, now, Duration::from_secs(3600)).unwrap();
    let verified = keys.verify_device(&device).unwrap();
    assert_eq!(verified.user_id, user);
    assert!(keys.verify(&device).is_err(), "a device token is no access token");
    let access = keys
        .issue(user, Uuid::new_v4(), Role::User, &Assurance::password(now), now)
        .unwrap();
    assert!(keys.verify_device(&access).is_none());
    let expired = keys
        .issue_device(user, now - chrono::TimeDelta::hours(2), Duration::from_secs(3600))
        .unwrap();
    assert!(keys.verify_device(&expired).is_none());
    let other = JwtKeys::new(
        vec![SigningKey::generate(KeyAlgorithm::Es256).unwrap().0],
        "authgraph",
        "authgraph",
        Duration::from_secs(900),
    )
    .unwrap();
    assert!(other.verify_device(&device).is_none(), "another key set");
    let mut forged = device.clone();
    forged.pop();
    assert!(keys.verify_device(&forged).is_none());
}

fn keys(alg: KeyAlgorithm) -> JwtKeys {
    let (key, _) = SigningKey::generate(alg).unwrap();
    JwtKeys::new(vec![key], "authgraph", "authgraph", Duration::from_secs(900)).unwrap()
}

#[test]
fn issued_tokens_verify_with_their_claims() {
    for alg in [KeyAlgorithm::Es256, KeyAlgorithm::EdDsa] {
        let keys = keys(alg);
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Utc::now();
        let assurance = Assurance::password(now).with_second_factor(now);
        let token = keys.issue(user, session, Role::Admin, &assurance, now).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(keys.signing_key().kid()));
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.sid, claims.role.as_str()),
            (user, session, "ADMIN")
        );
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.amr, ["pwd", "otp", "mfa"]);
        assert_eq!(claims.acr.as_deref(), Some("aal2"));
        assert_eq!(claims.scope.as_deref(), Some("user admin"));
        assert_eq!(claims.assurance().unwrap().auth_time.timestamp(), now.timestamp());
    }
}

#[test]
fn a_token_without_assurance_claims_proves_no_recent_authentication() {
    // Tokens issued before tokens carried `auth_time`/`amr` still verify, and step-up
    // treats them as old.
    let claims: Claims = serde_json::from_value(json!({
        "iss": "authgraph", "aud": "authgraph", "sub": Uuid::new_v4(), "sid": Uuid::new_v4(),
        "role": "USER", "iat": 1, "exp": 2, "jti": Uuid::new_v4(),
    }))
    .unwrap();
    assert!(claims.amr.is_empty() && claims.acr.is_none());
    assert!(claims.assurance().is_none());
}

#[test]
fn pem_round_trips_and_keeps_the_kid() {
    for alg in [KeyAlgorithm::Es256, KeyAlgorithm::EdDsa] {
        let (key, pem) = SigningKey::generate(alg).unwrap();
        let parsed = parse_pem_bundle(pem.expose_secret()).unwrap();
        assert_eq!(parsed[0].kid(), key.kid());
        assert_eq!(parsed[0].algorithm(), alg);
        let one_line = pem.expose_secret().replace('\n', "\\n");
        assert_eq!(parse_pem_bundle(&one_line).unwrap()[0].kid(), key.kid());
    }
}

#[test]
fn older_keys_verify_and_the_newest_signs() {
    let (old, _) = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
    let old_keys = JwtKeys::new(vec![old], "authgraph", "authgraph", Duration::from_secs(60)).unwrap();
    let old_token = old_keys
        .issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::User,
            &Assurance::password(Utc::now()),
            Utc::now(),
        )
        .unwrap();
    let (new, _) = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    let (old_again, _) = (old_keys.keys.into_iter().next().unwrap(), ());
    let rotated = JwtKeys::new(
        vec![new, old_again],
        "authgraph",
        "authgraph",
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(rotated.verify(&old_token).is_ok());
    let fresh = rotated
        .issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::User,
            &Assurance::password(Utc::now()),
            Utc::now(),
        )
        .unwrap();
    assert_eq!(jsonwebtoken::decode_header(&fresh).unwrap().alg, Algorithm::EdDSA);
    let jwks: serde_json::Value = serde_json::from_str(rotated.jwks()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert!(jwks.to_string().find("\"d\"").is_none(), "private part published");
}

#[test]
fn the_same_key_twice_is_refused() {
    let (_, pem) = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
    let twice = format!("{}{}", pem.expose_secret(), pem.expose_secret());
    let keys = parse_pem_bundle(&twice).unwrap();
    assert!(JwtKeys::new(keys, "a", "b", Duration::from_secs(1)).is_err());
}

#[test]
fn thumbprint_matches_rfc_7638_example_shape() {
    // Key order must be lexicographic for the thumbprint to be portable.
    let v = json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"});
    assert_eq!(v.to_string(), r#"{"crv":"P-256","kty":"EC","x":"a","y":"b"}"#);
}

#[test]
fn a_verified_token_is_checked_again_for_expiry_and_no_other_bytes_share_its_answer() {
    let keys = keys(KeyAlgorithm::Es256);
    let now = Utc::now();
    let token = keys
        .issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::User,
            &Assurance::password(now),
            now,
        )
        .unwrap();
    let first = keys.verify(&token).unwrap();
    assert_eq!(keys.verified.len(), 1, "the verified token is kept");
    let again = keys.verify(&token).unwrap();
    assert_eq!(
        (again.sub, again.sid, again.exp),
        (first.sub, first.sid, first.exp)
    );
    // Within the leeway it still passes; past it, a kept token is expired like any other.
    let leeway = i64::try_from(LEEWAY_SECONDS).unwrap();
    assert!(keys.verify_at(&token, first.exp + leeway).is_ok());
    assert!(matches!(
        keys.verify_at(&token, first.exp + leeway + 1),
        Err(TokenProblem::Expired)
    ));
    // The same header and claims under another signature are checked in full, and fail.
    let (head, signature) = token.rsplit_once('.').unwrap();
    let mut forged_signature = signature.to_owned().into_bytes();
    forged_signature[5] = if forged_signature[5] == b'A' { b'B' } else { b'A' };
    let forged = format!("{head}.{}", String::from_utf8(forged_signature).unwrap());
    assert!(matches!(keys.verify(&forged), Err(TokenProblem::Invalid)));
    assert_eq!(keys.verified.len(), 1, "a token that failed is never kept");
}

#[test]
fn the_verified_tokens_kept_are_bounded() {
    let keys = keys(KeyAlgorithm::EdDsa);
    let now = Utc::now();
    let issued: Vec<String> = (0..5000)
        .map(|_| {
            keys.issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::User,
                &Assurance::password(now),
                now,
            )
            .unwrap()
        })
        .collect();
    for token in &issued {
        keys.verify(token).unwrap();
    }
    assert!(keys.verified.len() <= 4096, "{} kept", keys.verified.len());
    // The newest are still kept; an evicted one verifies in full again.
    assert!(keys.verify(issued.last().unwrap()).is_ok());
    assert!(keys.verify(&issued[0]).is_ok());
}
