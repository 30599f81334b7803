//! Unit tests of `sessions`.

use chrono::TimeDelta;

use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn session(revoked: bool, expires: i64, absolute: i64) -> Session {
    Session {
        id: Uuid::nil(),
        user_id: Uuid::nil(),
        user_agent: None,
        created_at: at(-100),
        last_used_at: at(-100),
        expires_at: at(expires),
        absolute_expires_at: at(absolute),
        revoked_at: revoked.then(|| at(-1)),
        revoked_reason: None,
        amr: vec![Some("pwd".to_owned())],
        acr: "aal1".to_owned(),
        auth_time: at(-100),
    }
}

fn token(expires: i64, rotated: Option<i64>) -> RefreshToken {
    RefreshToken {
        token_hash: vec![],
        session_id: Uuid::nil(),
        issued_at: at(-100),
        expires_at: at(expires),
        rotated_at: rotated.map(at),
    }
}

#[test]
fn every_refresh_case_is_decided_by_the_rules() {
    use Decision::*;
    let grace = TimeDelta::seconds(10);
    let live = session(false, 100, 1000);
    // (case, session, token, successor opened, expected); now is at(0).
    // An unknown token has no row, and so no session: the read answers nothing and the
    // refresh is refused before anything is decided.
    type Case = (&'static str, Session, RefreshToken, bool, Decision);
    let cases: [Case; 9] = [
        ("current token", live.clone(), token(100, None), false, Rotate),
        ("expired token", live.clone(), token(0, None), false, Refuse),
        (
            "revoked session",
            session(true, 100, 1000),
            token(100, None),
            false,
            Refuse,
        ),
        (
            "idle session",
            session(false, 0, 1000),
            token(100, None),
            false,
            Refuse,
        ),
        (
            "session past its absolute end",
            session(false, 100, 0),
            token(100, None),
            false,
            Refuse,
        ),
        (
            "rotated inside grace",
            live.clone(),
            token(100, Some(-10)),
            true,
            Replay,
        ),
        (
            "rotated outside grace",
            live.clone(),
            token(100, Some(-11)),
            true,
            RevokeSession,
        ),
        (
            "rotated, successor unreadable",
            live.clone(),
            token(100, Some(-1)),
            false,
            RevokeSession,
        ),
        (
            "rotated, session already ended",
            session(true, 100, 1000),
            token(100, Some(-1)),
            true,
            Refuse,
        ),
    ];
    for (case, session, token, opened, expected) in cases {
        assert_eq!(decide(&session, &token, opened, at(0), grace), expected, "{case}");
    }
}
