//! Counts the SQL statements the app runs on one test database, through diesel's
//! connection instrumentation (installed once for the whole test binary).

use std::{
    collections::HashMap,
    sync::{Mutex, Once},
};

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};

/// Statements per watched database name.
static LOGS: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

/// The statements run on one database, from the moment it is watched.
pub struct SqlLog {
    db: String,
}

impl SqlLog {
    /// Starts recording the statements of connections opened to `db` from now on.
    /// Call it before the app's pool connects (right after `TestApp::spawn`).
    pub fn watch(db: &str) -> Self {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            set_default_instrumentation(|| Some(Box::new(Recorder { db: None }))).unwrap();
        });
        LOGS.lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(db.to_owned(), Vec::new());
        Self { db: db.to_owned() }
    }

    /// The statements recorded since the last call.
    pub fn take(&self) -> Vec<String> {
        LOGS.lock()
            .unwrap()
            .as_mut()
            .and_then(|logs| logs.get_mut(&self.db))
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

impl Drop for SqlLog {
    fn drop(&mut self) {
        if let Some(logs) = LOGS.lock().unwrap().as_mut() {
            logs.remove(&self.db);
        }
    }
}

/// One per connection: remembers which database it talks to.
struct Recorder {
    db: Option<String>,
}

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => {
                let path = url.split('?').next().unwrap_or(url);
                self.db = path.rsplit('/').next().map(str::to_owned);
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                let Some(db) = &self.db else { return };
                if let Some(log) = LOGS.lock().unwrap().as_mut().and_then(|logs| logs.get_mut(db)) {
                    log.push(query.to_string());
                }
            }
            _ => {}
        }
    }
}
