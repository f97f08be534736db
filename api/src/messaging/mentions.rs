//! Mentions. In plaintext places the server parses `<@user_id>` (or `<@!user_id>`),
//! `<@&role_id>` and `@everyone` / `@here`; in encrypted places the client declares the
//! mentioned user ids. Either way the result is filtered: users must be members of the server
//! (recipients of the DM), roles must belong to the server and be mentionable (or the author
//! holds MENTION_EVERYONE), and `@everyone` needs MENTION_EVERYONE (without it the message is
//! sent but mentions nobody).

use copains_wire::Id;
use sqlx::PgPool;

use super::MAX_MENTIONS;
use super::place::Place;
use crate::communities::permissions::Permissions;
use crate::error::ApiResult;

/// Mentions found in a text, before filtering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `<@id>` / `<@!id>`.
    pub users: Vec<i64>,
    /// `<@&id>`.
    pub roles: Vec<i64>,
    /// `@everyone` or `@here`.
    pub everyone: bool,
}

/// Parses mentions from plaintext (at most [`MAX_MENTIONS`] distinct of each kind).
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed {
        everyone: text.contains("@everyone") || text.contains("@here"),
        ..Parsed::default()
    };
    let mut rest = text;
    while let Some(i) = rest.find("<@") {
        rest = &rest[i + 2..];
        let (is_role, body) = match rest.as_bytes().first() {
            Some(b'&') => (true, &rest[1..]),
            Some(b'!') => (false, &rest[1..]),
            _ => (false, rest),
        };
        let digits = body.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 19 || body.as_bytes().get(digits) != Some(&b'>') {
            continue;
        }
        let Ok(id) = body[..digits].parse::<i64>() else {
            continue;
        };
        if id <= 0 {
            continue;
        }
        let list = if is_role {
            &mut out.roles
        } else {
            &mut out.users
        };
        if !list.contains(&id) && list.len() < MAX_MENTIONS {
            list.push(id);
        }
    }
    out
}

/// Keeps only the mentions the author may make in `place` (see the module docs).
pub async fn filter(db: &PgPool, place: &Place, p: Parsed) -> ApiResult<Parsed> {
    let mut users: Vec<i64> = p.users;
    users.sort_unstable();
    users.dedup();
    users.truncate(MAX_MENTIONS);
    let may_everyone = place.permissions.contains(Permissions::MENTION_EVERYONE);
    match place.server_id {
        None => {
            let recipients = super::dms::recipient_ids(db, place.id).await?;
            users.retain(|u| recipients.contains(&Id(*u)));
            Ok(Parsed {
                users,
                roles: Vec::new(),
                everyone: false,
            })
        }
        Some(server) => {
            let users: Vec<i64> = if users.is_empty() {
                users
            } else {
                sqlx::query_scalar(
                    "SELECT user_id FROM members WHERE server_id = $1 AND user_id = ANY($2)
                      ORDER BY user_id",
                )
                .bind(server.0)
                .bind(&users)
                .fetch_all(db)
                .await?
            };
            let roles: Vec<i64> = if p.roles.is_empty() {
                Vec::new()
            } else {
                sqlx::query_scalar(
                    "SELECT id FROM roles WHERE server_id = $1 AND id = ANY($2) AND id <> $1
                        AND (mentionable OR $3) ORDER BY id",
                )
                .bind(server.0)
                .bind(&p.roles)
                .bind(may_everyone)
                .fetch_all(db)
                .await?
            };
            Ok(Parsed {
                users,
                roles,
                everyone: p.everyone && may_everyone,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_roles_everyone() {
        let p =
            parse("hi <@12> and <@!13>, <@&7> @everyone <@12> <@x> <@99999999999999999999> <@5");
        assert_eq!(p.users, vec![12, 13]);
        assert_eq!(p.roles, vec![7]);
        assert!(p.everyone);
        assert_eq!(parse("plain text").users, Vec::<i64>::new());
        assert!(!parse("mail me at a@b.c").everyone);
        assert_eq!(parse("<@<@3>").users, vec![3]);
    }
}
