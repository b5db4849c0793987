//! The Access tokens page: the user's personal access tokens (see [`crate::tokens`]), a form
//! to make one, and the page that shows a new token's secret, once.

use maud::{Markup, html};

use super::{Page, csrf_field, layout, utc_date};
use crate::sessions::Session;
use crate::tokens::{CreatedToken, Scope, TokenInfo};

/// Lifetimes offered by the form, in days; the last choice is "never".
pub const EXPIRY_DAYS: [u64; 4] = [7, 30, 90, 365];

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn scope_help(scope: Scope) -> &'static str {
    match scope {
        Scope::FilesRead => "list files, their shares and downloads",
        Scope::FilesWrite => "upload and delete files",
        Scope::SharesWrite => "create and revoke share links",
        Scope::LinksMint => "mint one-time download links",
        Scope::WebhooksRead => "list webhooks and their delivery logs",
        Scope::WebhooksWrite => "add, rotate, test and delete webhooks",
        Scope::UploadsWrite => "create and revoke upload links",
    }
}

pub fn tokens_page(session: &Session, tokens: &[TokenInfo], message: Option<&str>) -> Markup {
    let content = html! {
        section.card aria-labelledby="new-token-title" {
            h1 #new-token-title { "New access token" }
            p.muted { "For scripts and the " code { "burnlink" } " command: send it as "
                code { "Authorization: Bearer …" } ". A token can do only what its scopes say, \
                and never make tokens." }
            @if let Some(message) = message {
                p.alert.error role="alert" { (message) }
            }
            form.stack method="post" action="/tokens" {
                (csrf_field(session))
                label for="token-name" { "Name" }
                input #token-name name="name" required maxlength="64" placeholder="backup job";
                fieldset {
                    legend { "Scopes" }
                    @for scope in Scope::ALL {
                        label {
                            input type="checkbox" name="scope" value=(scope.as_str());
                            " " code { (scope.as_str()) } ": " (scope_help(scope))
                        }
                    }
                }
                label for="token-expiry" { "Expires" }
                select #token-expiry name="expires_days" {
                    @for days in EXPIRY_DAYS {
                        option value=(days) selected[days == 30] { "in " (days) " days" }
                    }
                    option value="never" { "never" }
                }
                button.btn.primary type="submit" { "Create token" }
            }
        }
        section.card aria-labelledby="tokens-title" {
            h2 #tokens-title { "Your access tokens" }
            @if tokens.is_empty() {
                p.muted.empty { "None yet." }
            } @else {
                table.tokens {
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Scopes" }
                            th scope="col" { "Created (UTC)" }
                            th scope="col" { "Expires (UTC)" }
                            th scope="col" { "Last used (UTC)" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        }
                    }
                    tbody {
                        @for token in tokens {
                            tr data-token-id=(token.id) {
                                td { (token.name) }
                                td { (scopes_text(&token.scopes)) }
                                td { (utc_date(token.created_at)) }
                                td { @match token.expires_at { Some(at) => (utc_date(at)), None => "never" } }
                                td { @match token.last_used_at { Some(at) => (utc_date(at)), None => "never" } }
                                td {
                                    form method="post" action={ "/tokens/" (token.id) "/revoke" } {
                                        (csrf_field(session))
                                        button.btn.secondary type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(
        Page {
            title: "Access tokens",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

pub fn token_created_page(session: &Session, created: &CreatedToken) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="created-title" {
            h1 #created-title { "Access token " (created.name) }
            p { "Scopes: " (scopes_text(&created.scopes)) ". "
                @match created.expires_at {
                    Some(at) => { "Expires " (utc_date(at)) " UTC." },
                    None => "Does not expire.",
                }
            }
            div.row.copy-row {
                label.visually-hidden for="token-value" { "Access token" }
                input #token-value type="text" readonly value=(created.token);
            }
            p.note { "Copy it now: it is not shown again. Revoke it on this page at any time." }
            p { a.btn.primary href="/tokens" { "Back to your access tokens" } }
        }
    };
    layout(
        Page {
            title: "Access token",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}
