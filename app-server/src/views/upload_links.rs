//! Upload links: the owner's page (make, list, revoke), the page that shows a new link once,
//! and what an uploader without an account sees (see [`crate::upload_links`]).

use maud::{Markup, html};

use super::{Page, ShareChoices, csrf_field, iso_date, layout, utc_date};
use crate::files::FileInfo;
use crate::sessions::Session;
use crate::share_form::FORM_TOKEN_FIELD;
use crate::upload_links::{
    Arrived, DEFAULT_MAX_FILES, LinkVisit, MAX_FILES_PER_LINK, MAX_NOTE_CHARS, PASSWORD_FIELD,
    UploadLinkInfo, UploadLinkStatus,
};
use crate::views::size::human_size;

/// What a link preview of the sender's page shows: nothing about the owner or the files.
const SEND_PREVIEW: &str = "Send files";

/// What the form offers: lifetimes up to `--share-max-secs`; the total defaults to
/// `--max-upload-bytes`.
pub struct LinkChoices {
    pub max_secs: u64,
    pub max_upload_bytes: u64,
}

fn status_text(status: UploadLinkStatus) -> &'static str {
    match status {
        UploadLinkStatus::Live => "open",
        UploadLinkStatus::Expired => "expired",
        UploadLinkStatus::Revoked => "revoked",
        UploadLinkStatus::Full => "full",
    }
}

fn bytes(n: i64) -> String {
    human_size(u64::try_from(n).unwrap_or(0))
}

pub fn links_page(
    session: &Session,
    links: &[UploadLinkInfo],
    choices: &LinkChoices,
    message: Option<&str>,
) -> Markup {
    let lifetimes = ShareChoices {
        max_secs: choices.max_secs,
        max_downloads: 1,
    }
    .lifetimes();
    let default_mib = choices.max_upload_bytes.div_ceil(1024 * 1024).max(1);
    let content = html! {
        section.card aria-labelledby="new-link-title" {
            h1 #new-link-title { "New upload link" }
            p.muted { "Anyone with the link can send you files, without an account. The files \
                are yours: they appear in your file list, marked as received." }
            @if let Some(message) = message {
                p.alert.error role="alert" { (message) }
            }
            form.stack method="post" action=(crate::routes::upload_links::PAGE_PATH) {
                (csrf_field(session))
                label for="link-note" { "Note for the sender (optional)" }
                textarea #link-note name="note" maxlength=(MAX_NOTE_CHARS) rows="2"
                    placeholder="Please send the signed contract." {}
                label for="link-expires" { "Link works for" }
                select #link-expires name="expires_in_secs" {
                    @for (secs, label, selected) in lifetimes {
                        option value=(secs) selected[selected] { (label) }
                    }
                }
                label for="link-files" { "Files allowed" }
                input #link-files name="max_files" type="number" min="1"
                    max=(MAX_FILES_PER_LINK) value=(DEFAULT_MAX_FILES) required;
                label for="link-mib" { "All files together, at most (MiB)" }
                input #link-mib name="max_mib" type="number" min="1" value=(default_mib) required;
                label for="link-password" { "Password (optional)" }
                input #link-password name="password" type="password"
                    autocomplete="new-password" minlength="8";
                button.btn.primary type="submit" { "Create upload link" }
            }
        }
        section.card aria-labelledby="links-title" {
            h2 #links-title { "Your upload links" }
            @if links.is_empty() {
                p.muted.empty { "None yet." }
            } @else {
                ul.upload-links {
                    @for link in links {
                        li.upload-link data-link-id=(link.id) {
                            (link_summary(session, link))
                        }
                    }
                }
            }
        }
    };
    layout(
        Page {
            title: "Upload links",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

fn link_summary(session: &Session, link: &UploadLinkInfo) -> Markup {
    html! {
        p.link-summary {
            strong.link-status { (status_text(link.status)) }
            " · " span.link-files { (link.files_received) " of " (link.max_files) " files" }
            " · " (bytes(link.bytes_received)) " of " (bytes(link.max_bytes))
            @if link.files_pending > 0 { " · " (link.files_pending) " arriving now" }
            " · until "
            time datetime=(iso_date(link.expires_at)) { (utc_date(link.expires_at)) }
            @if link.has_password { " · password" }
        }
        @if !link.note.is_empty() { p.muted.link-note { (link.note) } }
        @if link.status != UploadLinkStatus::Revoked {
            form.inline method="post" action={ "/upload-links/" (link.id) "/revoke" } {
                (csrf_field(session))
                button.btn.danger.small type="submit" { "Revoke" }
            }
        }
        @if !link.files.is_empty() {
            table.received {
                thead {
                    tr {
                        th scope="col" { "File" }
                        th scope="col" { "Size" }
                        th scope="col" { "Arrived (UTC)" }
                        th scope="col" { "From" }
                        th scope="col" { "Browser" }
                    }
                }
                tbody {
                    @for file in &link.files { (arrived_row(file)) }
                }
            }
        }
    }
}

fn arrived_row(file: &FileInfo) -> Markup {
    let from = file.received.as_ref();
    html! {
        tr {
            td { a href={ "/files/" (file.id) "/download" } rel="noreferrer" { (file.name) } }
            td { (bytes(file.size)) }
            td { (utc_date(file.created_at)) }
            td { (from.and_then(|r| r.client.as_deref()).unwrap_or("?")) }
            td.agent { (from.and_then(|r| r.user_agent.as_deref()).unwrap_or("?")) }
        }
    }
}

/// The new link's URL, shown once (only its hash is kept).
pub fn link_created_page(session: &Session, link: &UploadLinkInfo) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="created-title" {
            h1 #created-title { "Upload link" }
            p {
                "Takes up to " (link.max_files) " file" @if link.max_files != 1 { "s" }
                ", " (bytes(link.max_bytes)) " in all, until " (utc_date(link.expires_at)) " UTC."
                @if link.has_password { " The password is asked for with each file." }
            }
            div.row.copy-row {
                label.visually-hidden for="share-url" { "Upload link" }
                input #share-url type="text" readonly value=(link.url.as_deref().unwrap_or(""));
                button.btn.primary.js-only #share-copy type="button" hidden { "Copy" }
            }
            p #copy-status role="status" aria-live="polite" {}
            p.note { "Copy it now: it is not shown again. Revoke it on the Upload links page at \
                any time." }
            p { a.btn.primary href=(crate::routes::upload_links::PAGE_PATH) {
                "Back to your upload links" } }
        }
    };
    layout(
        Page {
            title: "Upload link",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

/// What a sender sees: the owner's note, what is left, and a plain form (`form_token` and
/// `password` ahead of the file: the server checks them before it stores a byte). `app.js`
/// sends it with a progress bar (a file from [`crate::uploads::BROWSER_TUS_FROM`] through tus,
/// resuming after a broken connection); without script the browser posts it and gets
/// [`received_page`].
pub fn uploader_page(
    visit: &LinkVisit,
    action: &str,
    form_token: &str,
    max_upload: u64,
    message: Option<&str>,
) -> Markup {
    let per_file = u64::try_from(visit.bytes_left).unwrap_or(0).min(max_upload);
    let content = html! {
        section.card.narrow aria-labelledby="send-title" {
            h1 #send-title { "Send files" }
            div #messages role="alert" aria-live="assertive" {
                @if let Some(message) = message {
                    p.alert.error { (message) }
                }
            }
            @if !visit.note.is_empty() {
                blockquote.link-note { (visit.note) }
            }
            dl.facts {
                dt { "Files left" } dd.link-files-left { (visit.files_left) }
                dt { "Room left" } dd.link-bytes-left { (bytes(visit.bytes_left)) }
                dt { "Open until" } dd { (utc_date(visit.expires_at)) " UTC" }
            }
            form.stack #link-upload-form method="post" action=(action)
                enctype="multipart/form-data" data-max-bytes=(per_file)
                data-tus-from=(crate::uploads::BROWSER_TUS_FROM) {
                input type="hidden" name=(FORM_TOKEN_FIELD) value=(form_token);
                @if visit.has_password {
                    label for="link-password" { "Password" }
                    input #link-password name=(PASSWORD_FIELD) type="password" required
                        autocomplete="off";
                }
                label for="link-file" { "File (up to " (human_size(per_file)) ")" }
                input #link-file type="file" name="file" required;
                div.row {
                    button.btn.primary #link-upload-button type="submit" { "Send" }
                    div.progress #link-progress hidden {
                        progress #link-bar max="100" value="0" aria-label="Upload progress" {}
                        span #link-percent { "0%" }
                    }
                }
                p #link-status role="status" aria-live="polite" {}
            }
            p.note { "Files you send go to the person who gave you this link. Nothing you send \
                is shown to anyone else." }
            // tus-js-client, for large files (`<link>/uploads`, resuming after a broken
            // connection); the page's script looks for it and falls back to the form.
            script src=(crate::routes::assets::tus_url()) defer {}
        }
    };
    layout(
        Page {
            title: "Send files",
            session: None,
            neutral_preview: Some(SEND_PREVIEW),
        },
        content,
    )
}

/// After a file arrived (without script): what arrived and what is left.
pub fn received_page(arrived: &Arrived, action: &str) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="received-title" {
            h1 #received-title { "File received" }
            p.alert.ok role="status" {
                "Received " strong.received-name { (arrived.name) } " ("
                span.received-size { (bytes(arrived.size)) } ")."
            }
            p {
                (arrived.left.files_left) " more file" @if arrived.left.files_left != 1 { "s" }
                " and " (bytes(arrived.left.bytes_left)) " allowed."
            }
            @if arrived.left.files_left > 0 && arrived.left.bytes_left > 0 {
                p { a.btn.primary href=(action) { "Send another file" } }
            }
        }
    };
    layout(
        Page {
            title: "Send files",
            session: None,
            neutral_preview: Some(SEND_PREVIEW),
        },
        content,
    )
}

/// An unknown link: nothing to say about it.
pub fn unknown_link_page() -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="gone-title" {
            h1 #gone-title { "Link not available" }
            p.alert.error role="alert" {
                "This link cannot be used. Check that it was copied whole, or ask the person \
                 who sent it for a new one."
            }
        }
    };
    layout(
        Page {
            title: "Send files",
            session: None,
            neutral_preview: Some(SEND_PREVIEW),
        },
        content,
    )
}
