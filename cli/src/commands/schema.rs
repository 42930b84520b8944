//! `relay schema`: the config's JSON Schema (the file shipped in `schema/`).

pub fn run() -> Result<(), String> {
    super::emit(&shared::config::schema::config_schema_text())
}
