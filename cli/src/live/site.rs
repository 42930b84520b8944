//! Reading a live system's configuration with a connection's credentials:
//! a Jira site's projects, create screens, fields, priorities,
//! resolutions, workflows and the integration user's permissions; a
//! ServiceNow instance's tables, columns and choice lists. The same reads
//! serve `relay check --live` and `relay init --discover`.

use serde_json::Value;
use shared::outbound::connections::Connection;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, Call, CallBody, ConnectorSettings, RestConnector};
use shared::rules::plan::Method;
use shared::secrets::SecretStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One connection's GET requests, answered as (status, JSON).
pub struct Reader {
    conn: RestConnector,
    pub name: String,
    pub base_url: String,
}

impl Reader {
    pub fn new(c: &Connection, secrets: Arc<dyn SecretStore>) -> Self {
        Reader {
            name: c.name.clone(),
            base_url: c.base_url.clone(),
            conn: RestConnector::new(
                c.clone(),
                http_client(),
                secrets,
                ConnectorSettings::default(),
            ),
        }
    }

    /// A GET; 2xx and 404 are answers, anything else is an error naming
    /// the connection and what the system said.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>, String> {
        let call = Call {
            method: Method::Get,
            once: false,
            path: path.to_owned(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            headers: Vec::new(),
            body: CallBody::None,
        };
        let reply = shared::outbound::Connector::call(
            &self.conn,
            &call,
            &Budget::from_now(Duration::from_secs(60)),
        )
        .await
        .map_err(|e| format!("{} ({}): GET {path}: {e}", self.name, self.base_url))?;
        match reply.status {
            200..=299 => Ok(Some(reply.json.unwrap_or(Value::Null))),
            404 => Ok(None),
            s => Err(format!(
                "{} ({}): GET {path} answered {s}: {}",
                self.name,
                self.base_url,
                reply.error.unwrap_or_default()
            )),
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // A reference field (`{"link": …, "value": sys_id}`).
        Value::Object(o) => o.get("value").map(text).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// An id and a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdName {
    pub id: String,
    pub name: String,
}

fn id_names(v: &Value) -> Vec<IdName> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| IdName {
            id: text(&x["id"]),
            name: text(&x["name"]),
        })
        .collect()
}

/// A field of a create screen.
#[derive(Clone, Debug)]
pub struct CreateField {
    pub id: String,
    pub name: String,
    pub required: bool,
    pub has_default: bool,
}

/// A Jira site, read through one connection.
pub struct JiraSite {
    pub reader: Reader,
    api: &'static str,
}

impl JiraSite {
    pub fn new(c: &Connection, secrets: Arc<dyn SecretStore>) -> Self {
        JiraSite {
            reader: Reader::new(c, secrets),
            api: c.api.prefix(),
        }
    }

    async fn list(&self, what: &str) -> Result<Vec<IdName>, String> {
        let v = self
            .reader
            .get(&format!("{}/{what}", self.api), &[])
            .await?;
        Ok(v.as_ref().map(id_names).unwrap_or_default())
    }

    /// Every field: (id, name, custom).
    pub async fn fields(&self) -> Result<Vec<(IdName, bool)>, String> {
        let v = self.reader.get(&format!("{}/field", self.api), &[]).await?;
        Ok(v.as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    IdName {
                        id: text(&f["id"]),
                        name: text(&f["name"]),
                    },
                    f["custom"].as_bool().unwrap_or(false),
                )
            })
            .collect())
    }

    pub async fn priorities(&self) -> Result<Vec<IdName>, String> {
        self.list("priority").await
    }

    pub async fn resolutions(&self) -> Result<Vec<IdName>, String> {
        self.list("resolution").await
    }

    /// The project (id, key, name), `None` when the site has none by that
    /// key or the user cannot see it.
    pub async fn project(&self, key: &str) -> Result<Option<(String, String, String)>, String> {
        let v = self
            .reader
            .get(&format!("{}/project/{}", self.api, enc(key)), &[])
            .await?;
        Ok(v.map(|p| (text(&p["id"]), text(&p["key"]), text(&p["name"]))))
    }

    /// Every project the user can see: (id, key, name).
    pub async fn projects(&self) -> Result<Vec<(String, String, String)>, String> {
        let items = self
            .paged(&format!("{}/project/search", self.api), "values")
            .await?;
        Ok(items
            .iter()
            .map(|p| (text(&p["id"]), text(&p["key"]), text(&p["name"])))
            .collect())
    }

    /// The issue types the user can create in the project.
    pub async fn create_types(&self, project: &str) -> Result<Vec<IdName>, String> {
        let items = self
            .paged(
                &format!("{}/issue/createmeta/{}/issuetypes", self.api, enc(project)),
                "issueTypes",
            )
            .await?;
        Ok(id_names(&Value::Array(items)))
    }

    /// The create screen of an issue type in a project.
    pub async fn create_fields(
        &self,
        project: &str,
        type_id: &str,
    ) -> Result<Vec<CreateField>, String> {
        let items = self
            .paged(
                &format!(
                    "{}/issue/createmeta/{}/issuetypes/{}",
                    self.api,
                    enc(project),
                    enc(type_id)
                ),
                "fields",
            )
            .await?;
        Ok(items
            .iter()
            .map(|f| CreateField {
                id: text(&f["fieldId"]),
                name: text(&f["name"]),
                required: f["required"].as_bool().unwrap_or(false),
                has_default: f["hasDefaultValue"].as_bool().unwrap_or(false),
            })
            .collect())
    }

    /// Every item of a paged list (`startAt`/`maxResults`).
    async fn paged(&self, path: &str, field: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        loop {
            let start = out.len().to_string();
            let v = self
                .reader
                .get(path, &[("startAt", &start), ("maxResults", "50")])
                .await?
                .unwrap_or(Value::Null);
            let page = v[field].as_array().cloned().unwrap_or_default();
            let n = page.len();
            out.extend(page);
            // Jira's pages say `total`, some also `isLast`.
            let last = v["isLast"].as_bool() == Some(true)
                || v["total"].as_u64().is_some_and(|t| out.len() as u64 >= t);
            if n == 0 || last {
                return Ok(out);
            }
        }
    }

    /// Whether the user has a global permission (`ADMINISTER`).
    pub async fn global_permission(&self, key: &str) -> Result<bool, String> {
        let v = self
            .reader
            .get(
                &format!("{}/mypermissions", self.api),
                &[("permissions", key)],
            )
            .await?
            .unwrap_or(Value::Null);
        Ok(v["permissions"][key]["havePermission"]
            .as_bool()
            .unwrap_or(false))
    }

    /// The products accounts can be given (application roles: key, name).
    pub async fn products(&self) -> Result<Vec<IdName>, String> {
        let v = self
            .reader
            .get(&format!("{}/applicationrole", self.api), &[])
            .await?;
        Ok(v.as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|r| IdName {
                id: text(&r["key"]),
                name: text(&r["name"]),
            })
            .collect())
    }

    /// The names of the groups whose name contains `query` (the group
    /// picker; at most 50, Cloud and Data Center alike).
    pub async fn groups_like(&self, query: &str) -> Result<Vec<String>, String> {
        let v = self
            .reader
            .get(
                &format!("{}/groups/picker", self.api),
                &[("query", query), ("maxResults", "50")],
            )
            .await?
            .unwrap_or(Value::Null);
        Ok(v["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| text(&g["name"]))
            .collect())
    }

    /// Whether the user has each permission in the project.
    pub async fn permissions(
        &self,
        project: &str,
        wanted: &[&str],
    ) -> Result<BTreeMap<String, bool>, String> {
        let list = wanted.join(",");
        let v = self
            .reader
            .get(
                &format!("{}/mypermissions", self.api),
                &[("projectKey", project), ("permissions", &list)],
            )
            .await?
            .unwrap_or(Value::Null);
        Ok(wanted
            .iter()
            .map(|p| {
                (
                    (*p).to_owned(),
                    v["permissions"][*p]["havePermission"]
                        .as_bool()
                        .unwrap_or(false),
                )
            })
            .collect())
    }

    /// The workflows of a project (by its workflow scheme) with their
    /// transitions: (workflow name, transitions).
    pub async fn workflows(&self, project_id: &str) -> Result<Vec<(String, Vec<IdName>)>, String> {
        let v = self
            .reader
            .get(
                &format!("{}/workflowscheme/project", self.api),
                &[("projectId", project_id)],
            )
            .await?
            .unwrap_or(Value::Null);
        let mut names: Vec<String> = Vec::new();
        for assoc in v["values"].as_array().into_iter().flatten() {
            let scheme = &assoc["workflowScheme"];
            names.push(text(&scheme["defaultWorkflow"]));
            for w in scheme["issueTypeMappings"]
                .as_object()
                .into_iter()
                .flatten()
            {
                names.push(text(w.1));
            }
        }
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let v = self
                .reader
                .get(
                    &format!("{}/workflow/search", self.api),
                    &[("workflowName", &name), ("expand", "transitions")],
                )
                .await?
                .unwrap_or(Value::Null);
            for w in v["values"].as_array().into_iter().flatten() {
                out.push((text(&w["id"]["name"]), id_names(&w["transitions"])));
            }
        }
        Ok(out)
    }
}

/// A column of a ServiceNow table (as `sys_dictionary` has it).
#[derive(Clone, Debug)]
pub struct Column {
    /// The table that defines it (`task` for `incident.state`).
    pub defined_on: String,
    pub read_only: bool,
}

/// A ServiceNow instance, read through one connection.
pub struct Instance {
    pub reader: Reader,
}

impl Instance {
    pub fn new(c: &Connection, secrets: Arc<dyn SecretStore>) -> Self {
        Instance {
            reader: Reader::new(c, secrets),
        }
    }

    async fn table(&self, table: &str, query: &str, fields: &str) -> Result<Vec<Value>, String> {
        let v = self
            .reader
            .get(
                &format!("/api/now/table/{table}"),
                &[
                    ("sysparm_query", query),
                    ("sysparm_fields", fields),
                    ("sysparm_exclude_reference_link", "true"),
                    ("sysparm_limit", "10000"),
                ],
            )
            .await?
            .unwrap_or(Value::Null);
        Ok(v["result"].as_array().cloned().unwrap_or_default())
    }

    /// The table and the tables it extends, nearest first (`incident`,
    /// `task`); empty when the instance has no such table.
    pub async fn lineage(&self, table: &str) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        let mut query = format!("name={table}");
        while out.len() < 16 {
            let rows = self
                .table("sys_db_object", &query, "sys_id,name,super_class")
                .await?;
            let Some(row) = rows.first() else { break };
            out.push(text(&row["name"]));
            let parent = text(&row["super_class"]);
            if parent.is_empty() {
                break;
            }
            query = format!("sys_id={parent}");
        }
        Ok(out)
    }

    /// The columns of a table, its own and inherited (nearest definition wins).
    pub async fn columns(&self, lineage: &[String]) -> Result<BTreeMap<String, Column>, String> {
        let rows = self
            .table(
                "sys_dictionary",
                &format!("nameIN{}^elementISNOTEMPTY", lineage.join(",")),
                "name,element,read_only",
            )
            .await?;
        let mut out: BTreeMap<String, Column> = BTreeMap::new();
        for t in lineage.iter().rev() {
            for r in rows.iter().filter(|r| text(&r["name"]) == *t) {
                out.insert(
                    text(&r["element"]),
                    Column {
                        defined_on: t.clone(),
                        read_only: text(&r["read_only"]) == "true",
                    },
                );
            }
        }
        Ok(out)
    }

    /// The active choices of a column: (value, label), from the nearest
    /// table in the lineage that has a list for it; empty: no choice list.
    pub async fn choices(
        &self,
        lineage: &[String],
        element: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let rows = self
            .table(
                "sys_choice",
                &format!(
                    "nameIN{}^element={element}^inactive=false",
                    lineage.join(",")
                ),
                "name,value,label,language",
            )
            .await?;
        for t in lineage {
            let mine: Vec<(String, String)> = rows
                .iter()
                .filter(|r| text(&r["name"]) == *t)
                .filter(|r| {
                    let l = text(&r["language"]);
                    l.is_empty() || l == "en"
                })
                .map(|r| (text(&r["value"]), text(&r["label"])))
                .collect();
            if !mine.is_empty() {
                return Ok(mine);
            }
        }
        Ok(Vec::new())
    }
}

/// A path segment, percent-encoded.
fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
