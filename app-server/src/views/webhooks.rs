//! The Webhooks page: the user's endpoints with their state (a disabled one says why and
//! offers to re-enable it), a form to add one, each endpoint's page with its delivery log,
//! and the page that shows a secret, once.

use maud::{Markup, html};

use super::{Page, csrf_field, layout, utc_date};
use crate::sessions::Session;
use crate::webhooks::{EventType, WebhookDetail, WebhookInfo, WebhookStatus};

fn event_help(event: EventType) -> &'static str {
    match event {
        EventType::DownloadCompleted => "a link's file was downloaded whole",
        EventType::DownloadPartial => "a link's download broke off before the end",
        EventType::ShareExhausted => "a share's last download was taken",
        EventType::ShareExpired => "a share reached its expiry",
        EventType::UploadReceived => "a file arrived through one of your upload links",
        EventType::Test => "a test sent from this page",
    }
}

fn events_text(events: &[EventType]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An endpoint's state in words, and for a disabled one what to do.
fn status(session: &Session, webhook: &WebhookInfo) -> Markup {
    html! {
        @match webhook.status {
            WebhookStatus::Active => span.status.ok { "Active" },
            WebhookStatus::Failing => span.status.warn {
                "Failing since " (utc_date(webhook.failing_since.unwrap_or(0))) " UTC"
            },
            WebhookStatus::Disabled => {
                span.status.error {
                    "Disabled " (utc_date(webhook.disabled_at.unwrap_or(0))) " UTC after failing \
                     for 5 days; nothing is sent to it until you re-enable it."
                }
                " "
                form.inline method="post" action={ "/webhooks/" (webhook.id) "/enable" } {
                    (csrf_field(session))
                    button.btn.primary.small type="submit" { "Re-enable" }
                }
            },
        }
    }
}

/// The buttons of one endpoint.
fn actions(session: &Session, webhook: &WebhookInfo) -> Markup {
    let action = |what: &str| format!("/webhooks/{}/{what}", webhook.id);
    html! {
        div.row.actions {
            @if webhook.status != WebhookStatus::Disabled {
                form.inline method="post" action=(action("test")) {
                    (csrf_field(session))
                    button.btn.secondary.small type="submit" { "Send test event" }
                }
            }
            form.inline method="post" action=(action("rotate")) {
                (csrf_field(session))
                button.btn.secondary.small type="submit" { "Rotate secret" }
            }
            form.inline method="post" action=(action("delete"))
                data-confirm={ "the webhook to " (webhook.url) } {
                (csrf_field(session))
                button.btn.danger.small type="submit"
                    aria-label={ "Delete the webhook to " (webhook.url) } { "Delete" }
            }
        }
    }
}

pub fn webhooks_page(
    session: &Session,
    webhooks: &[WebhookInfo],
    message: Option<&str>,
    allow_http: bool,
) -> Markup {
    let content = html! {
        section.card aria-labelledby="new-webhook-title" {
            h1 #new-webhook-title { "New webhook" }
            p.muted { "Your app hears of downloads and shares as they happen: a signed "
                code { "POST" } " per event, as the "
                a href="https://www.standardwebhooks.com" rel="noreferrer" { "Standard Webhooks" }
                " spec describes, retried for a day until it answers 2xx." }
            @if let Some(message) = message {
                p.alert.error role="alert" { (message) }
            }
            form.stack method="post" action="/webhooks" {
                (csrf_field(session))
                label for="webhook-url" { "URL" }
                input #webhook-url name="url" type="url" required maxlength="2048"
                    placeholder=(if allow_http { "https:// or http://" } else { "https://" });
                label for="webhook-description" { "Description (optional)" }
                input #webhook-description name="description" maxlength="200"
                    placeholder="billing app";
                fieldset {
                    legend { "Events" }
                    @for event in EventType::SUBSCRIBABLE {
                        label {
                            input type="checkbox" name="event" value=(event.as_str())
                                checked[event == EventType::DownloadCompleted];
                            " " code { (event.as_str()) } ": " (event_help(event))
                        }
                    }
                }
                button.btn.primary type="submit" { "Add webhook" }
            }
        }
        section.card aria-labelledby="webhooks-title" {
            h2 #webhooks-title { "Your webhooks" }
            @if webhooks.is_empty() {
                p.muted.empty { "None yet." }
            } @else {
                ul.webhooks {
                    @for webhook in webhooks {
                        li.webhook data-webhook-id=(webhook.id) {
                            p {
                                a href={ "/webhooks/" (webhook.id) } { code { (webhook.url) } }
                                @if !webhook.description.is_empty() { " · " (webhook.description) }
                            }
                            p.muted { (events_text(&webhook.events)) }
                            p { (status(session, webhook)) }
                            (actions(session, webhook))
                        }
                    }
                }
            }
        }
    };
    layout(
        Page {
            title: "Webhooks",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

/// One endpoint and its delivery log, newest first.
pub fn webhook_page(session: &Session, detail: &WebhookDetail) -> Markup {
    let webhook = &detail.webhook;
    let content = html! {
        section.card aria-labelledby="webhook-title" {
            h1 #webhook-title { "Webhook " code { (webhook.url) } }
            @if !webhook.description.is_empty() { p { (webhook.description) } }
            p { "Events: " (events_text(&webhook.events)) }
            p { (status(session, webhook)) }
            @if let Some(until) = webhook.previous_secret_expires_at {
                p.note { "The previous secret also signs until " (utc_date(until)) " UTC." }
            }
            p { (detail.pending) " event" @if detail.pending != 1 { "s" } " waiting to be delivered." }
            (actions(session, webhook))
        }
        section.card aria-labelledby="log-title" {
            h2 #log-title { "Delivery log" }
            @if detail.attempts.is_empty() {
                p.muted.empty { "Nothing sent yet." }
            } @else {
                table.files.webhook-log {
                    thead {
                        tr {
                            th scope="col" { "When (UTC)" }
                            th scope="col" { "Event" }
                            th scope="col" { "Attempt" }
                            th scope="col" { "Result" }
                            th scope="col" { "Time" }
                        }
                    }
                    tbody {
                        @for attempt in &detail.attempts {
                            tr data-event-id=(attempt.event_id) {
                                td { (utc_date(attempt.time_ms / 1000)) }
                                td { code { (attempt.event_type) } br; small.muted { (attempt.event_id) } }
                                td { (attempt.attempt) }
                                td {
                                    @if attempt.ok {
                                        span.status.ok { "Delivered" }
                                        @if let Some(status) = attempt.status { " (" (status) ")" }
                                    } @else {
                                        span.status.error { "Failed" } ": "
                                        (attempt.error.as_deref().unwrap_or("no answer"))
                                    }
                                }
                                td { (attempt.latency_ms) " ms" }
                            }
                        }
                    }
                }
            }
        }
        p { a.btn.secondary href="/webhooks" { "Back to your webhooks" } }
    };
    layout(
        Page {
            title: "Webhook",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}

/// A new secret, shown once: after adding an endpoint, or rotating (`previous_until`: the
/// old secret's end).
pub fn secret_page(
    session: &Session,
    webhook: &WebhookInfo,
    secret: &str,
    previous_until: Option<i64>,
) -> Markup {
    let content = html! {
        section.card.narrow aria-labelledby="secret-title" {
            h1 #secret-title { "Signing secret" }
            p { "For " code { (webhook.url) } ". Your receiver verifies each request with it \
                (docs: WEBHOOKS.md)." }
            div.row.copy-row {
                label.visually-hidden for="webhook-secret" { "Signing secret" }
                input #webhook-secret type="text" readonly value=(secret);
            }
            p.note { "Copy it now: it is not shown again." }
            @if let Some(until) = previous_until {
                p.note { "The previous secret also signs until " (utc_date(until))
                    " UTC: deploy the new one before then." }
            }
            p { a.btn.primary href={ "/webhooks/" (webhook.id) } { "To the webhook" } }
        }
    };
    layout(
        Page {
            title: "Signing secret",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}
