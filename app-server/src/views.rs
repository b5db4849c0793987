//! The HTML of the browser interface, rendered on the server with maud.
//!
//! maud escapes every interpolated value (`&`, `<`, `>`, `"`), in text and in (always
//! double-quoted) attributes alike, so a user-supplied string can never become markup. The
//! pages work without JavaScript: every action is a plain link or form. `/static/app.js`
//! (see `routes::assets`) only enhances them: upload progress and drag-and-drop, the Share
//! dialog (without script, a page) with a Copy button, a confirmation before deleting. The strict CSP allows no inline
//! script or style, so there is none here: no `style=` and no `on…=` attributes.

use maud::{DOCTYPE, Markup, html};
use shared::record::Outcome;

use crate::downloads::RecentDownload;
use crate::files::FileInfo;
use crate::outcomes::ShareDownload;
use crate::routes::assets;
use crate::sessions::{CSRF_FIELD, Session};
use crate::share_form::FORM_TOKEN_FIELD;
use crate::shares::{OwnerShare, ShareInfo, ShareStatus, Visit};

pub mod accounts;
pub mod size;
pub mod tokens;
pub mod upload_links;
pub mod webhooks;

use size::human_size;

/// What a share's page shows a link preview.
const SHARE_PREVIEW: &str = "A shared file";

/// What a page needs besides its content.
pub struct Page<'a> {
    pub title: &'a str,
    /// The signed-in user, for the header and its log-out form.
    pub session: Option<&'a Session>,
    /// A page for visitors that link previews and crawlers may fetch: `noindex`, and preview
    /// metadata that names nothing but this (the title is already neutral).
    pub neutral_preview: Option<&'a str>,
}

fn layout(page: Page<'_>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (page.title) " · burnlink" }
                @if let Some(preview) = page.neutral_preview {
                    meta name="robots" content="noindex, nofollow";
                    meta property="og:title" content=(preview);
                    meta property="og:description" content="Open the link to see it.";
                    meta property="og:type" content="website";
                    meta name="twitter:card" content="summary";
                }
                link rel="stylesheet" href=(assets::css_url());
                script src=(assets::js_url()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" {
                        svg.logo viewBox="0 0 24 24" width="26" height="26" aria-hidden="true"
                            focusable="false" {
                            path fill="currentColor" d=(FLAME) {}
                        }
                        "burnlink"
                    }
                    @if let Some(session) = page.session {
                        div.who {
                            span { "Signed in as " strong { (session.username.as_str()) } }
                            a href="/tokens" { "Access tokens" }
                            a href=(crate::routes::upload_links::PAGE_PATH) { "Upload links" }
                            a href="/webhooks" { "Webhooks" }
                            @if session.is_admin { a href=(crate::accounts::USERS_PATH) { "Users" } }
                            form method="post" action="/logout" {
                                (csrf_field(session))
                                button.btn.secondary type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (content) }
            }
        }
    }
}

/// The logo: a flame, inline SVG (no request, no font needed).
const FLAME: &str = "M12.6 2.2c.5 3.1-1.3 5-2.9 6.9C8.2 10.8 7 12.4 7 14.8 7 18 9.2 21 12.3 21 \
     15.4 21 17.5 18.4 17.5 15.3c0-2.2-1-4-2.3-5.3.2 1.7-.5 3.2-1.8 3.8.6-4.2-.3-8.3-.8-11.6z";

fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf_token()); }
}

/// How the login page offers to log in.
pub struct LoginChoices<'a> {
    /// `--password-login`: the username and password form.
    pub password: bool,
    /// The identity provider's name (`--oidc-name`), when sign-in through it is configured.
    pub provider: Option<&'a str>,
}

/// The login form, with an error above it when the last attempt failed.
pub fn login_page(error: Option<&str>, username: &str, choices: &LoginChoices<'_>) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="login-title" {
            h1 #login-title { "Log in" }
            p.muted { "Upload files and share them with links that work exactly once." }
            @if let Some(error) = error {
                p.alert.error role="alert" { (error) }
            }
            @if let Some(provider) = choices.provider {
                // A link, not a form: the provider is another origin (`form-action`).
                div.stack {
                    a.btn.primary #sign-in-provider href=(crate::oidc::LOGIN_PATH) {
                        "Sign in with " (provider)
                    }
                }
                @if choices.password { p.muted { "Or log in with a password:" } }
            }
            @if choices.password {
                (password_form(error, username))
            }
        }
    };
    layout(
        Page {
            title: "Log in",
            session: None,
            neutral_preview: None,
        },
        content,
    )
}

/// The username and password form.
fn password_form(error: Option<&str>, username: &str) -> Markup {
    html! {
        form.stack method="post" action="/login" {
            label for="username" { "Username" }
            input #username name="username" autocomplete="username" required
                autocapitalize="none" spellcheck="false" value=(username)
                autofocus[error.is_none()];
            label for="password" { "Password" }
            input #password name="password" type="password"
                autocomplete="current-password" required autofocus[error.is_some()];
            button.btn.primary type="submit" { "Log in" }
        }
    }
}

/// The signed-in user's files, with the upload form above them.
pub fn files_page(
    session: &Session,
    files: &[FileInfo],
    shares: &[OwnerShare],
    file_downloads: &[(String, ShareDownload)],
    recent: &[RecentDownload],
    max_upload: u64,
    choices: &ShareChoices,
) -> Markup {
    let max = human_size(max_upload);
    let content = html! {
        h1.visually-hidden { "Your files" }
        div #messages role="alert" aria-live="assertive" {}
        section.card aria-labelledby="upload-title" {
            h2 #upload-title { "Upload a file" }
            form #upload-form method="post" action="/files" enctype="multipart/form-data"
                data-max-bytes=(max_upload) data-tus-from=(crate::uploads::BROWSER_TUS_FROM) {
                // Before the file: the server checks the token before it stores a byte.
                (csrf_field(session))
                label.drop #drop for="file-input" {
                    span.drop-title { "Choose a file" span.js-only hidden { " or drop it here" } }
                    span.drop-hint #file-chosen { "Up to " (max) "." }
                }
                input #file-input type="file" name="file" required;
                div.row {
                    button.btn.primary #upload-button type="submit" { "Upload" }
                    div.progress #upload-progress hidden {
                        progress #upload-bar max="100" value="0" aria-label="Upload progress" {}
                        span #upload-percent { "0%" }
                    }
                }
                p #upload-status role="status" aria-live="polite" {}
            }
            // tus-js-client, for large files: only this page loads it; the page's script looks
            // for it when an upload starts.
            script src=(assets::tus_url()) defer {}
        }
        (share_dialog(session, choices))
        section.card aria-labelledby="files-title" {
            h2 #files-title { "Your files" @if !files.is_empty() { " (" (files.len()) ")" } }
            @if files.is_empty() {
                p.muted.empty { "No files yet. Upload one above." }
            } @else {
                table.files {
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Size" }
                            th scope="col" { "Type" }
                            th scope="col" { "Uploaded (UTC)" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        }
                    }
                    tbody {
                        @for file in files {
                            (file_row(session, file))
                            @let mine: Vec<&OwnerShare> =
                                shares.iter().filter(|s| s.info.file_id == file.id).collect();
                            @let served: Vec<&ShareDownload> = file_downloads
                                .iter()
                                .filter(|(id, _)| *id == file.id)
                                .map(|(_, d)| d)
                                .collect();
                            @if !mine.is_empty() || !served.is_empty() {
                                (share_rows(session, file, &mine, &served))
                            }
                        }
                    }
                }
            }
        }
        (recent_downloads(recent))
    };
    layout(
        Page {
            title: "Your files",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

/// The user's latest download attempts, as the download servers' audit files record them.
fn recent_downloads(recent: &[RecentDownload]) -> Markup {
    html! {
        section.card aria-labelledby="downloads-title" {
            h2 #downloads-title { "Recent downloads" }
            @if recent.is_empty() {
                p.muted.empty { "None of your links has been opened recently." }
            } @else {
                table.files.downloads {
                    thead {
                        tr {
                            th scope="col" { "When (UTC)" }
                            th scope="col" { "File" }
                            th scope="col" { "Outcome" }
                            th scope="col" { "Sent" }
                        }
                    }
                    tbody {
                        @for d in recent {
                            tr {
                                td { time datetime=(iso_date(d.time)) { (utc_date(d.time)) } }
                                td { (d.name.as_deref().unwrap_or("(deleted file)")) }
                                td { (outcome_text(d.outcome)) }
                                td { (human_size(d.bytes)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What an outcome means to the link's owner.
fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "Downloaded",
        Outcome::Partial => "Started, not finished (link used)",
        Outcome::Used => "Refused: link already used",
        Outcome::Expired => "Refused: link expired",
        Outcome::Invalid => "Refused: invalid link",
        Outcome::NotFound => "Refused: file deleted",
        Outcome::Unavailable => "Refused: briefly unavailable (link kept)",
        Outcome::RangeNotSatisfiable => "Refused: bad range (link kept)",
        Outcome::PrefetchDeclined => "Browser prefetch declined (link kept)",
        Outcome::Error => "Server error",
        Outcome::Resumed => "Resumed: the rest of the download sent",
        Outcome::FileChanged => "Resume refused: the file changed",
        Outcome::Head => "Checked without downloading (HEAD, link kept)",
    }
}

fn file_row(session: &Session, file: &FileInfo) -> Markup {
    html! {
        tr {
            td.name data-label="Name" {
                a href={ "/files/" (file.id) "/download" } rel="noreferrer"
                    title={ "Download " (file.name) } { (file.name) }
                @if let Some(from) = &file.received {
                    br;
                    small.received-mark {
                        a href=(crate::routes::upload_links::PAGE_PATH) { "Received" }
                        " through an upload link from "
                        (from.client.as_deref().unwrap_or("?")) " ("
                        span.agent { (from.user_agent.as_deref().unwrap_or("unknown browser")) }
                        ")"
                    }
                }
            }
            td data-label="Size" { (human_size(u64::try_from(file.size).unwrap_or(0))) }
            td.type data-label="Type" { (file.content_type) }
            td data-label="Uploaded" {
                time datetime=(iso_date(file.created_at)) { (utc_date(file.created_at)) }
            }
            td.actions {
                a.btn.secondary href={ "/files/" (file.id) "/download" } rel="noreferrer"
                    aria-label={ "Download " (file.name) } { "Download" }
                a.btn.secondary.share-open href={ "/files/" (file.id) "/share" }
                    data-file-id=(file.id) data-name=(file.name)
                    aria-label={ "Share " (file.name) } { "Share" }
                form.inline method="post" action={ "/files/" (file.id) "/delete" }
                    data-confirm=(file.name) {
                    (csrf_field(session))
                    button.btn.danger type="submit" aria-label={ "Delete " (file.name) } {
                        "Delete"
                    }
                }
            }
        }
    }
}

/// What the share form offers: lifetimes up to `--share-max-secs`, downloads up to
/// `--share-max-downloads`.
pub struct ShareChoices {
    pub max_secs: u64,
    pub max_downloads: u64,
}

impl ShareChoices {
    /// `(seconds, label, selected)`: the usual lifetimes that fit, 7 days (or the longest
    /// that fits) selected; the cap itself when it is none of them.
    fn lifetimes(&self) -> Vec<(u64, String, bool)> {
        const USUAL: [(u64, &str); 5] = [
            (3600, "1 hour"),
            (24 * 3600, "1 day"),
            (7 * 24 * 3600, "7 days"),
            (14 * 24 * 3600, "14 days"),
            (30 * 24 * 3600, "30 days"),
        ];
        let mut out: Vec<(u64, String, bool)> = USUAL
            .iter()
            .filter(|(secs, _)| *secs <= self.max_secs)
            .map(|(secs, label)| (*secs, (*label).to_owned(), false))
            .collect();
        if !out.iter().any(|(secs, _, _)| *secs == self.max_secs) {
            out.push((
                self.max_secs,
                format!("{} (the longest)", duration(self.max_secs)),
                false,
            ));
        }
        let default = crate::shares::DEFAULT_SHARE_SECS.min(self.max_secs);
        let pick = out
            .iter()
            .rposition(|(secs, _, _)| *secs <= default)
            .unwrap_or(0);
        out[pick].2 = true;
        out
    }
}

/// The fields of a new share (expiry, downloads, optional password), for the dialog and for
/// the page without script.
fn share_fields(choices: &ShareChoices, prefix: &str) -> Markup {
    html! {
        label for={ (prefix) "expires" } { "Link works for" }
        select #{ (prefix) "expires" } name="expires_in_secs" {
            @for (secs, label, selected) in choices.lifetimes() {
                option value=(secs) selected[selected] { (label) }
            }
        }
        label for={ (prefix) "downloads" } { "Downloads allowed" }
        input #{ (prefix) "downloads" } name="max_downloads" type="number" min="1"
            max=(choices.max_downloads) value="1" required;
        label for={ (prefix) "password" } { "Password (optional)" }
        input #{ (prefix) "password" } name="password" type="password" autocomplete="new-password"
            minlength="8";
    }
}

/// The Share dialog (opened by `app.js`; without script the Share link goes to a page).
fn share_dialog(session: &Session, choices: &ShareChoices) -> Markup {
    html! {
        dialog #share-dialog aria-labelledby="share-title" {
            h2 #share-title { "Share " span #share-name {} }
            form.stack #share-form method="post" action="" {
                (csrf_field(session))
                (share_fields(choices, "dialog-"))
                div.row {
                    button.btn.primary #share-create type="submit" { "Create link" }
                    button.btn.secondary #share-cancel type="button" { "Close" }
                }
                p #share-status role="status" aria-live="polite" {}
            }
            div #share-result hidden {
                p { "Send this link. Opening it shows the file; only " strong { "Download" }
                    " uses a download, so mail scanners and chat previews do not." }
                (copy_row(""))
                button.btn.secondary #share-done type="button" { "Done" }
            }
        }
    }
}

/// The URL field and its Copy button (`app.js` copies; without script, select and copy).
fn copy_row(url: &str) -> Markup {
    html! {
        div.row.copy-row {
            label.visually-hidden for="share-url" { "Share link" }
            input #share-url type="text" readonly value=(url);
            button.btn.primary.js-only #share-copy type="button" hidden { "Copy" }
        }
        p #copy-status role="status" aria-live="polite" {}
    }
}

/// A file's shares under its row: downloads used of allowed, expiry, Revoke, and what was
/// downloaded through each.
fn share_rows(
    session: &Session,
    file: &FileInfo,
    shares: &[&OwnerShare],
    served: &[&ShareDownload],
) -> Markup {
    html! {
        tr.shares {
            td colspan="5" {
                @if !served.is_empty() {
                    details.file-downloads {
                        summary { "Downloaded " (served.len()) " time"
                            @if served.len() != 1 { "s" } }
                        (downloads_table(served.iter().copied(), true))
                    }
                }
                ul.shares {
                    @for share in shares {
                        li.share data-share-id=(share.info.id) {
                            span.share-summary {
                                "Share link: "
                                strong.share-count {
                                    (share.info.downloads) " of " (share.info.max_downloads)
                                    " downloads used"
                                }
                                @if share.info.status == ShareStatus::UsedUp {
                                    " (no downloads left)"
                                }
                                " · expires "
                                time datetime=(iso_date(share.info.expires_at)) {
                                    (utc_date(share.info.expires_at))
                                }
                                @if share.info.has_password { " · password" }
                            }
                            form.inline method="post"
                                action={ "/shares/" (share.info.id) "/revoke" } {
                                (csrf_field(session))
                                button.btn.danger.small type="submit"
                                    aria-label={ "Revoke a share of " (file.name) } { "Revoke" }
                            }
                            @if !share.downloads.is_empty() {
                                (downloads_table(share.downloads.iter(), false))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Downloads as their owner sees them: when, complete or partial, bytes, address, browser,
/// and (`via`) whether through a share or the owner's own link.
fn downloads_table<'a>(downloads: impl Iterator<Item = &'a ShareDownload>, via: bool) -> Markup {
    html! {
        table.share-downloads {
            thead {
                tr {
                    th scope="col" { "When (UTC)" }
                    th scope="col" { "Result" }
                    th scope="col" { "Sent" }
                    th scope="col" { "Address" }
                    th scope="col" { "Browser" }
                    @if via { th scope="col" { "Via" } }
                }
            }
            tbody {
                @for d in downloads {
                    tr {
                        td { (utc_date(d.time_ms / 1000)) }
                        td { @if d.complete { "Complete" } @else { "Partial" } }
                        td { (human_size(u64::try_from(d.bytes).unwrap_or(0))) }
                        td { (d.client.as_deref().unwrap_or("?")) }
                        td.agent { (d.user_agent.as_deref().unwrap_or("?")) }
                        @if via {
                            td { @if d.share_id.is_some() { "share link" } @else { "your link" } }
                        }
                    }
                }
            }
        }
    }
}

/// The page without script for sharing one file.
pub fn share_form_page(
    session: &Session,
    file: &FileInfo,
    choices: &ShareChoices,
    error: Option<&str>,
) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="share-page-title" {
            h1 #share-page-title { "Share " (file.name) }
            @if let Some(error) = error {
                p.alert.error role="alert" { (error) }
            }
            form.stack method="post" action={ "/files/" (file.id) "/shares" } {
                (csrf_field(session))
                (share_fields(choices, ""))
                button.btn.primary type="submit" { "Create link" }
            }
            p { a href="/" { "Back to your files" } }
        }
    };
    layout(
        Page {
            title: "Share",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

/// The new share's URL, shown once (only its hash is kept).
pub fn share_created_page(session: &Session, file_name: &str, share: &ShareInfo) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="created-title" {
            h1 #created-title { "Share link for " (file_name) }
            p {
                "Allows " (share.max_downloads) " download"
                @if share.max_downloads != 1 { "s" }
                ", until " (utc_date(share.expires_at)) " UTC."
                @if share.has_password { " The password is asked for before each download." }
            }
            (copy_row(share.url.as_deref().unwrap_or("")))
            p.note { "Copy it now: it is not shown again. Revoke it from your files at any time." }
            p { a.btn.primary href="/" { "Back to your files" } }
        }
    };
    layout(
        Page {
            title: "Share link",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

/// What a visitor of a live share sees: the file, what is left, and a Download button that
/// is a form POST (a GET of this page never uses anything).
pub fn share_page(visit: &Visit, action: &str, form_token: &str, message: Option<&str>) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="shared-title" {
            h1 #shared-title { "A file shared with you" }
            @if let Some(message) = message {
                p.alert.error role="alert" { (message) }
            }
            dl.facts {
                dt { "File" } dd.share-file { (visit.name) }
                dt { "Size" } dd { (human_size(u64::try_from(visit.size).unwrap_or(0))) }
                dt { "Available until" } dd { (utc_date(visit.expires_at)) " UTC" }
                dt { "Downloads left" } dd.share-left { (visit.downloads_left) }
            }
            form.stack #share-download method="post" action=(action) {
                input type="hidden" name=(FORM_TOKEN_FIELD) value=(form_token);
                @if visit.has_password {
                    label for="share-password" { "Password" }
                    input #share-password name="password" type="password" required
                        autocomplete="off" autofocus;
                }
                button.btn.primary type="submit" { "Download" }
            }
            p.note { "Each press of Download uses one of the downloads left." }
        }
    };
    layout(
        Page {
            title: "Shared file",
            session: None,
            neutral_preview: Some(SHARE_PREVIEW),
        },
        content,
    )
}

/// One page for every share a visitor cannot use (unknown, expired, revoked, used up): it
/// tells nobody which.
pub fn share_gone_page() -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="gone-title" {
            h1 #gone-title { "Link not available" }
            p.alert.error role="alert" {
                "This link cannot be used: it may have expired, been withdrawn, or have no \
                 downloads left. Ask the person who sent it for a new one."
            }
        }
    };
    layout(
        Page {
            title: "Shared file",
            session: None,
            neutral_preview: Some(SHARE_PREVIEW),
        },
        content,
    )
}

/// A failed form submission: what went wrong, and the way back.
pub fn error_page(title: &str, message: &str, session: Option<&Session>) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="error-title" {
            h1 #error-title { (title) }
            p.alert.error role="alert" { (message) }
            p {
                @if session.is_some() {
                    a.btn.primary href="/" { "Back to your files" }
                } @else {
                    a.btn.primary href="/" { "Log in" }
                }
            }
        }
    };
    layout(
        Page {
            title,
            session,
            neutral_preview: None,
        },
        content,
    )
}

/// A lifetime in the largest whole unit: `90 seconds`, `2 hours`, `45 days`.
fn duration(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `(year, month, day, hour, minute)` in UTC (days-from-civil inverse, H. Hinnant's
/// algorithm).
fn civil(unix: i64) -> (i64, i64, i64, i64, i64) {
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
    (year, month, day, secs / 3600, secs % 3600 / 60)
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc_date(unix: i64) -> String {
    let (y, mo, d, h, mi) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

/// `YYYY-MM-DDTHH:MMZ`, for `<time datetime>`.
fn iso_date(unix: i64) -> String {
    let (y, mo, d, h, mi) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD_ONLY: LoginChoices<'static> = LoginChoices {
        password: true,
        provider: None,
    };

    #[test]
    fn dates_and_sizes() {
        assert_eq!(utc_date(0), "1970-01-01 00:00");
        assert_eq!(utc_date(1_709_210_096), "2024-02-29 12:34");
        assert_eq!(iso_date(1_709_210_096), "2024-02-29T12:34Z");
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1024 * 1024 * 1024), "1.0 GiB");
    }

    #[test]
    fn login_page_escapes_the_error_and_the_username() {
        let page = login_page(Some("<x>"), "\"><script>", &PASSWORD_ONLY).into_string();
        assert!(page.contains("&lt;x&gt;"), "{page}");
        assert!(
            page.contains("value=\"&quot;&gt;&lt;script&gt;\""),
            "{page}"
        );
        assert!(!page.contains("<x>"));
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        let page = login_page(Some("e"), "", &PASSWORD_ONLY).into_string();
        assert!(!page.contains("<style"));
        assert!(!page.contains("style="));
        for handler in ["onclick", "onload", "onsubmit", "onerror"] {
            assert!(!page.contains(handler), "{handler}: {page}");
        }
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains(&format!("<script src=\"{}\"", assets::js_url())));
    }
}
