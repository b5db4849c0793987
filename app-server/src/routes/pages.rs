//! The browser interface: one page, plain HTML forms, no JavaScript.
//!
//! Every user-supplied string goes through [`escape`]. Forms echo the session's CSRF token in
//! a hidden `csrf_token` field; the security headers come from the `DefaultHeaders` middleware
//! set in `startup.rs`.

use actix_multipart::Multipart;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::error::AppError;
use crate::files::{self, FileId, FileInfo};
use crate::sessions::{self, MaybeSession, Session};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/files", web::post().to(upload))
        .route("/files/{id}/delete", web::post().to(delete))
        .route("/files/{id}/download", web::get().to(download));
}

/// A login form. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// A form that only carries the CSRF token. Optional, so that a missing field answers 403
/// `csrf`, not 400.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf_token: Option<String>,
}

fn csrf_of(form: &Option<web::Form<CsrfForm>>) -> Option<&str> {
    form.as_ref().and_then(|f| f.csrf_token.as_deref())
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

fn html(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

async fn index(
    state: web::Data<AppState>,
    session: MaybeSession,
) -> Result<HttpResponse, AppError> {
    let body = match session.0 {
        Some(session) => {
            let files = files::list(&state.db, &session.user_id).await?;
            files_page(&session, &files)
        }
        None => login_page(None),
    };
    Ok(html(actix_web::http::StatusCode::OK, body))
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let previous = sessions::cookie_value(&req);
    match sessions::login(&state, &form.username, &form.password, previous.as_deref()).await {
        Ok((_, session)) => {
            let mut response = see_other("/");
            response
                .add_cookie(&state.sessions.cookie(session.id))
                .map_err(|e| AppError::Internal(format!("session cookie: {e}")))?;
            Ok(response)
        }
        Err(AppError::InvalidCredentials) => Ok(html(
            actix_web::http::StatusCode::UNAUTHORIZED,
            login_page(Some("Unknown user or wrong password.")),
        )),
        Err(e) => Err(e),
    }
}

async fn logout(
    state: web::Data<AppState>,
    session: MaybeSession,
    form: Option<web::Form<CsrfForm>>,
) -> Result<HttpResponse, AppError> {
    if let Some(session) = session.0 {
        session.check_csrf(csrf_of(&form))?;
        session.end(&state.db).await?;
    }
    let mut response = see_other("/");
    response
        .add_removal_cookie(&state.sessions.removal_cookie())
        .map_err(|e| AppError::Internal(format!("session cookie: {e}")))?;
    Ok(response)
}

async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    multipart: Multipart,
) -> Result<HttpResponse, AppError> {
    let csrf = super::files::upload_csrf(&req, &state, &session)?;
    files::upload(&state, &session, multipart, csrf).await?;
    Ok(see_other("/"))
}

async fn delete(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
    form: Option<web::Form<CsrfForm>>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf(csrf_of(&form))?;
    let id = FileId::parse(&id)?;
    files::delete(&state, &session.user_id, &id).await?;
    Ok(see_other("/"))
}

/// A plain link to a file: mints a fresh single-use URL and redirects there, so downloading
/// needs no JavaScript. Logged out: back to the login page.
async fn download(
    state: web::Data<AppState>,
    session: MaybeSession,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let Some(session) = session.0 else {
        return Ok(see_other("/"));
    };
    let id = FileId::parse(&id)?;
    let link = files::link(&state, &session.user_id, &id).await?;
    Ok(see_other(&link.url))
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;\
padding:0 1rem;color:#222}header{display:flex;gap:1rem;align-items:center;\
justify-content:space-between}table{border-collapse:collapse;width:100%}\
td,th{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}\
.error{color:#b00}form.inline{display:inline}label{display:block;margin:.5rem 0}";

fn layout(body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>burnlink</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
}

fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    layout(&format!(
        "<h1>burnlink</h1>{error}\
         <form method=\"post\" action=\"/login\">\
         <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Log in</button></form>"
    ))
}

fn files_page(session: &Session, files: &[FileInfo]) -> String {
    let csrf = escape(session.csrf_token());
    let hidden = format!("<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">");
    let mut rows = String::new();
    for file in files {
        let id = escape(&file.id);
        rows.push_str(&format!(
            "<tr><td><a href=\"/files/{id}/download\" rel=\"noreferrer\">{name}</a></td>\
             <td>{size}</td><td>{date}</td><td>\
             <form class=\"inline\" method=\"post\" action=\"/files/{id}/delete\">{hidden}\
             <button type=\"submit\">Delete</button></form></td></tr>",
            name = escape(&file.name),
            size = human_size(file.size),
            date = utc_date(file.created_at),
        ));
    }
    let list = if files.is_empty() {
        "<p>No files yet.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th>Name</th><th>Size</th><th>Uploaded (UTC)</th><th></th></tr>\
             </thead><tbody>{rows}</tbody></table>"
        )
    };
    layout(&format!(
        "<header><h1>burnlink</h1><span>Signed in as <b>{user}</b></span>\
         <form method=\"post\" action=\"/logout\">{hidden}\
         <button type=\"submit\">Log out</button></form></header>\
         <form method=\"post\" action=\"/files\" enctype=\"multipart/form-data\">{hidden}\
         <input type=\"file\" name=\"file\" required> <button type=\"submit\">Upload</button>\
         </form>{list}",
        user = escape(session.username.as_str()),
    ))
}

fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `YYYY-MM-DD HH:MM` in UTC (days-from-civil inverse, H. Hinnant's algorithm).
fn utc_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_html_metacharacters() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn dates_and_sizes() {
        assert_eq!(utc_date(0), "1970-01-01 00:00");
        assert_eq!(utc_date(1_709_210_096), "2024-02-29 12:34");
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1536), "1.5 KiB");
    }

    #[test]
    fn login_page_escapes_the_error() {
        assert!(login_page(Some("<x>")).contains("&lt;x&gt;"));
    }
}
