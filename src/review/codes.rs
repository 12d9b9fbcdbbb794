//! Message codes (admin): create, edit, retire. Handhelds read the table at each dock.

use super::detail::Notices;
use super::html::{notice, page, url, Esc};
use super::orders::{save_code, set_code_retired, CodeForm};
use super::{act, db, viewer};
use crate::serve::auth::{check_csrf, now_local, AdminUser};
use crate::serve::error::AppError;
use crate::serve::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::fmt::Write;

/// `GET /review/codes`.
pub async fn list(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    Query(n): Query<Notices>,
) -> Result<Response, AppError> {
    let codes = db(&state, |s| Ok(s.codes(true)?)).await?;
    let v = viewer(&user);
    let csrf = v.csrf_field();
    let mut b = notice(Some(&n.done), Some(&n.error));
    b.push_str(
        "<p>Handhelds load the codes that are not retired at their next dock.</p>\
         <table><tr><th>Code</th><th>Category</th><th>Description</th><th>Opens a follow-up</th><th>Status</th><th>Change</th></tr>",
    );
    for c in &codes {
        let _ = write!(
            b,
            "<tr><td>{code}</td><td colspan=\"5\"><form method=\"post\" action=\"/review/codes/{cu}\">{csrf}\
             <label>Category <input name=\"category\" value=\"{cat}\" size=\"10\" maxlength=\"20\" required></label>\
             <label>Description <input name=\"description\" value=\"{desc}\" size=\"40\" maxlength=\"80\" required></label>\
             <label><input type=\"checkbox\" name=\"requires_follow_up\" value=\"on\"{fu}> opens a follow-up</label> \
             <span>{status}</span> <button type=\"submit\" name=\"op\" value=\"edit\">Save</button> \
             <button type=\"submit\" name=\"op\" value=\"{toggle}\">{toggle_label}</button></form></td></tr>",
            code = Esc(&c.code),
            cu = url(&c.code),
            cat = Esc(&c.category),
            desc = Esc(&c.description),
            fu = if c.requires_follow_up { " checked" } else { "" },
            status = if c.retired { "retired" } else { "in use" },
            toggle = if c.retired { "restore" } else { "retire" },
            toggle_label = if c.retired { "Bring back" } else { "Retire" },
        );
    }
    let _ = write!(
        b,
        "</table><h2>New code</h2><form method=\"post\" action=\"/review/codes\">{csrf}\
         <label>Code <input name=\"code\" size=\"4\" maxlength=\"4\" required></label>\
         <label>Category <input name=\"category\" size=\"10\" maxlength=\"20\" required placeholder=\"trouble\"></label>\
         <label>Description <input name=\"description\" size=\"40\" maxlength=\"80\" required></label>\
         <label><input type=\"checkbox\" name=\"requires_follow_up\" value=\"on\"> opens a follow-up</label> \
         <button type=\"submit\">Create</button></form>"
    );
    Ok(Html(page("Message codes", &v, &b)).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct CodeFormData {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    requires_follow_up: Option<String>,
    #[serde(default)]
    op: String,
}

/// `POST /review/codes`: create.
pub async fn create(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    Form(f): Form<CodeFormData>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (now_local(), user.name.clone());
    act(&state, "/review/codes".into(), move |s| {
        let c = save_code(
            s,
            &CodeForm {
                code: f.code,
                category: f.category,
                description: f.description,
                requires_follow_up: f.requires_follow_up.is_some(),
            },
            false,
            &actor,
            now,
        )?;
        Ok((None, format!("Code {} created.", c.code)))
    })
    .await
}

/// `POST /review/codes/{code}`: edit, retire or bring back.
pub async fn edit(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    Path(code): Path<String>,
    Form(f): Form<CodeFormData>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (now_local(), user.name.clone());
    act(&state, "/review/codes".into(), move |s| {
        match f.op.as_str() {
            "retire" | "restore" => {
                set_code_retired(s, &code, f.op == "retire", &actor, now)?;
                Ok((
                    None,
                    format!(
                        "Code {code} {}.",
                        if f.op == "retire" {
                            "retired"
                        } else {
                            "back in use"
                        }
                    ),
                ))
            }
            _ => {
                let c = save_code(
                    s,
                    &CodeForm {
                        code,
                        category: f.category,
                        description: f.description,
                        requires_follow_up: f.requires_follow_up.is_some(),
                    },
                    true,
                    &actor,
                    now,
                )?;
                Ok((None, format!("Code {} saved.", c.code)))
            }
        }
    })
    .await
}
