//! Unit tests of `throttle`.

use super::*;

fn rule(raw: &str) -> ThrottleRule {
    ThrottleRule::parse(raw).unwrap().unwrap()
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn empty(now: DateTime<Utc>) -> Counter {
    Counter {
        key: "k".into(),
        attempts: 0,
        window_ends_at: now,
        locked_until: None,
    }
}

/// When a client retrying the moment each wait ends makes its attempts, from 0 s
/// up to `horizon` seconds.
fn attempt_times(rule: &ThrottleRule, horizon: i64) -> Vec<i64> {
    let mut now = t(0);
    let mut counter = empty(now);
    let mut times = Vec::new();
    while now < t(horizon) {
        if let Some(wait) = remaining_wait(&counter, now) {
            now = add(now, wait);
            continue;
        }
        counter = take(&counter, rule, now);
        times.push((now - t(0)).num_seconds());
    }
    times
}

/// The most attempts inside any interval of `span` seconds.
fn most_in_any(times: &[i64], span: i64) -> usize {
    times
        .iter()
        .enumerate()
        .map(|(i, start)| times[i..].iter().take_while(|t| **t < start + span).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn the_limit_passes_free_attempts_then_waits_grow() {
    let r = rule("3/1h,10s..40s");
    let mut c = empty(t(0));
    for n in 1..=2 {
        c = take(&c, &r, t(0));
        assert_eq!((c.attempts, c.locked_until), (n, None));
    }
    c = take(&c, &r, t(0));
    assert_eq!(c.locked_until, Some(t(10)));
    assert_eq!(remaining_wait(&c, t(4)), Some(Duration::from_secs(6)));
    assert_eq!(remaining_wait(&c, t(10)), None);
    c = take(&c, &r, t(10));
    assert_eq!(c.locked_until, Some(t(30)));
    c = take(&c, &r, t(30));
    assert_eq!(c.locked_until, Some(t(70)));
    c = take(&c, &r, t(70));
    assert_eq!(c.locked_until, Some(t(110)), "capped at 40 s");
    // A new window starts the count over.
    c = take(&c, &r, t(3600));
    assert_eq!((c.attempts, c.locked_until, c.window_ends_at), (1, None, t(7200)));
}

#[test]
fn one_address_cannot_slow_down_the_account_for_its_owner() {
    let defaults = ThrottleConfig::default();
    let pair = defaults.login_account_address.unwrap();
    let account = defaults.login_account.unwrap();
    let window = i64::try_from(account.window.as_secs()).unwrap();
    let times = attempt_times(&pair, 3 * window);
    let most = most_in_any(&times, window);
    // Not even two addresses flooding together reach the account's limit.
    assert!(
        2 * most < account.free as usize,
        "one address makes {most} attempts per account window against a limit of {}",
        account.free
    );
    // And the one address gets a handful of quick guesses, then about one an hour.
    assert_eq!(most_in_any(&times, 60), 10);
    assert!(most <= 45, "{most}");
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after(Duration::from_millis(1)), 1);
    assert_eq!(retry_after(Duration::from_millis(1500)), 2);
    assert_eq!(retry_after(Duration::from_secs(60)), 60);
}

#[test]
fn ipv6_clients_are_counted_by_their_64_block() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    assert_eq!(address(a), address(b));
    assert_eq!(address(a), "2001:db8:1:2::/64");
    assert_eq!(address("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    assert_eq!(address("192.0.2.1".parse().unwrap()), "192.0.2.1");
}

#[test]
fn keys_never_hold_an_email() {
    let email = Email::parse("Alice@Example.com", "email").unwrap();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for (limit, subject) in [
        (Limit::LoginAccount, Subject::Email(&email)),
        (Limit::LoginAccountAddress, Subject::EmailFrom(&email, ip)),
    ] {
        let key = subject.key(limit);
        assert!(!key.to_lowercase().contains("alice"), "{key}");
        assert!(key.starts_with(limit.name()), "{key}");
    }
    assert_eq!(
        Subject::Address(ip).key(Limit::LoginAddress),
        "login.address:192.0.2.1"
    );
}
