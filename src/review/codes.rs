//! Message codes (a clerk duty: "creates and enters message categories on handheld units"): create,
//! edit, retire; the category is picked from a list. Handhelds read the table at each dock.

use super::detail::Notices;
use super::html::{beside, notice, page, typed, url, FormError, Viewer};
use super::orders::{save_code, set_code_retired, CodeForm, CATEGORIES};
use super::{act, form_error, read, viewer, REFUSED};
use crate::domain::MessageCode;
use crate::serve::auth::{check_csrf, ClerkUser};
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

fn category_select(current: &str, err: Option<&FormError>, form: &str) -> Markup {
    let chosen = typed(err, form, "category", current);
    html! {
        select name="category" required {
            @if !CATEGORIES.iter().any(|(c, _)| *c == chosen) && !chosen.is_empty() {
                option value=(chosen) selected { (chosen) " (from the CIS)" }
            }
            @for (c, label) in CATEGORIES { option value=(c) selected[*c == chosen] { (label) } }
        }
    }
}

fn render(codes: &[MessageCode], v: &Viewer, n: &Notices, err: Option<&FormError>) -> Markup {
    html! {
        (notice(Some(&n.done), Some(&n.error)))
        @if let Some(e) = err { p.err role="alert" { "Not done: " (e.message) } }
        p { "Handhelds load the codes that are not retired at their next dock." }
        table.cards #codes {
            tr { th { "Code" } th { "Change" } }
            @for c in codes {
                @let form = format!("code-{}", c.code);
                tr {
                    td { strong { (c.code) } br; span.muted { (if c.retired { "retired" } else { "in use" }) } }
                    td { form method="post" action={ "/review/codes/" (url(&c.code)) } {
                        (v.csrf_field())
                        label { "Category " (category_select(&c.category, err, &form)) (beside(err, &form, "category")) }
                        label { "Description " input name="description" value=(typed(err, &form, "description", &c.description)) size="30" maxlength="80" required; (beside(err, &form, "description")) }
                        label { input type="checkbox" name="requires_follow_up" value="on" checked[c.requires_follow_up]; " opens a follow-up" }
                        " " button type="submit" name="op" value="edit" { "Save" } " "
                        button type="submit" name="op" value=(if c.retired { "restore" } else { "retire" }) { (if c.retired { "Bring back" } else { "Retire" }) }
                    } }
                }
            }
        }
        h2 { "New code" }
        form method="post" action="/review/codes" {
            (v.csrf_field())
            label { "Code " input name="code" size="4" maxlength="4" required value=(typed(err, "new", "code", "")); (beside(err, "new", "code")) }
            label { "Category " (category_select("trouble", err, "new")) (beside(err, "new", "category")) }
            label { "Description " input name="description" size="30" maxlength="80" required value=(typed(err, "new", "description", "")); (beside(err, "new", "description")) }
            label { input type="checkbox" name="requires_follow_up" value="on"; " opens a follow-up" }
            " " button type="submit" { "Create" }
        }
    }
}

async fn show(
    state: &AppState,
    user: &ClerkUser,
    n: Notices,
    err: Option<FormError>,
) -> Result<Response, AppError> {
    let codes = read(state, |c| Ok(crate::store::codes_in(c, true)?)).await?;
    let v = viewer(user);
    let html = Html(page("Message codes", &v, render(&codes, &v, &n, err.as_ref())).into_string());
    Ok(match err {
        Some(_) => (REFUSED, html).into_response(),
        None => html.into_response(),
    })
}

/// `GET /review/codes`.
pub async fn list(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(n): Query<Notices>,
) -> Result<Response, AppError> {
    show(&state, &user, n, None).await
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
    user: ClerkUser,
    Form(f): Form<CodeFormData>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (state.now_local(), user.name.clone());
    let typed_in = [
        ("code", f.code.clone()),
        ("category", f.category.clone()),
        ("description", f.description.clone()),
    ];
    let out = act(&state, "/review/codes".into(), move |s| {
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
    .await?;
    match out {
        Ok(r) => Ok(r),
        Err(e) => {
            let vals: Vec<(&str, &str)> = typed_in.iter().map(|(k, v)| (*k, v.as_str())).collect();
            show(
                &state,
                &user,
                Notices::default(),
                Some(form_error("new", &e, &vals)),
            )
            .await
        }
    }
}

/// `POST /review/codes/{code}`: edit, retire or bring back.
pub async fn edit(
    State(state): State<AppState>,
    user: ClerkUser,
    Path(code): Path<String>,
    Form(f): Form<CodeFormData>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (state.now_local(), user.name.clone());
    let form = format!("code-{code}");
    let typed_in = [
        ("category", f.category.clone()),
        ("description", f.description.clone()),
    ];
    let out = act(&state, "/review/codes".into(), move |s| {
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
    .await?;
    match out {
        Ok(r) => Ok(r),
        Err(e) => {
            let vals: Vec<(&str, &str)> = typed_in.iter().map(|(k, v)| (*k, v.as_str())).collect();
            show(
                &state,
                &user,
                Notices::default(),
                Some(form_error(&form, &e, &vals)),
            )
            .await
        }
    }
}
