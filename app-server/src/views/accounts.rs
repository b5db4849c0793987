//! The administrators' Users page (see [`crate::accounts`]).

use maud::{Markup, html};

use super::{Page, csrf_field, layout, utc_date};
use crate::accounts::{Account, LoginMethod, USERS_PATH};
use crate::sessions::Session;

pub fn users_page(session: &Session, accounts: &[Account]) -> Markup {
    let content = html! {
        section.card aria-labelledby="users-title" {
            h1 #users-title { "Users (" (accounts.len()) ")" }
            p.muted { "Everyone who can log in, and how. Ending a user's sessions logs them \
                out everywhere at once; their access tokens keep working." }
            table.users {
                thead {
                    tr {
                        th scope="col" { "User" }
                        th scope="col" { "Logs in with" }
                        th scope="col" { "Created (UTC)" }
                        th scope="col" { "Sessions" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    }
                }
                tbody {
                    @for account in accounts {
                        tr data-user=(account.username) {
                            td {
                                (account.username)
                                @if account.admin { " " strong.admin { "(administrator)" } }
                            }
                            td.method {
                                @match &account.method {
                                    LoginMethod::Password => "password",
                                    LoginMethod::Provider { issuer, last_login_at } => {
                                        "identity provider " code { (issuer) }
                                        br;
                                        span.muted { "last signed in " (utc_date(*last_login_at)) }
                                    }
                                }
                            }
                            td { (utc_date(account.created_at)) }
                            td.sessions { (account.sessions) }
                            td {
                                form method="post"
                                    action={ (USERS_PATH) "/" (account.id) "/end-sessions" } {
                                    (csrf_field(session))
                                    button.btn.secondary type="submit"
                                        disabled[account.sessions == 0]
                                        aria-label={ "End the sessions of " (account.username) } {
                                        "End sessions"
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
            title: "Users",
            session: Some(session),
            neutral_preview: None,
        },
        content,
    )
}
