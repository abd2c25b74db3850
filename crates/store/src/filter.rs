//! The filter language of `tunnelwatch flows`, `alerts` and `export`, in the spirit of
//! tcpdump and nfdump: a hand-written lexer and recursive-descent parser that produce an
//! [`Expr`]. For alerts, a compiler turns it into a SQL condition whose every user value
//! is a bound parameter (the SQL text is built only from fixed fragments, so a filter
//! can never inject SQL). Flows live in blocks (`blocks.rs`), so `FlowFilter`
//! evaluates the expression on each stored row, with the same meaning as the SQL, and
//! names the hosts a match needs so that blocks whose Bloom filter lacks them are
//! never read.
//!
//! Grammar (keywords are case-insensitive; `&&`, `||`, `!` are accepted for `and`, `or`,
//! `not`):
//!
//! ```text
//! filter  := or
//! or      := and ( "or" and )*
//! and     := unary ( "and" unary )*
//! unary   := "not" unary | "(" or ")" | pred
//! pred    := [ "src" | "dst" ] "host" ADDR
//!          | [ "src" | "dst" ] "net" ADDR "/" LEN
//!          | [ "src" | "dst" ] "port" [ CMP ] NUMBER
//!          | "proto" NAME | "service" NAME | "conn_state" CODE | "cause" NAME
//!          | "uid" TEXT | "community_id" TEXT | "history" TEXT
//!          | "detector" NAME | "category" NAME | "severity" [ CMP ] LEVEL   (alerts)
//!          | NUMFIELD CMP VALUE
//! CMP     := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
//! NUMFIELD:= bytes | pkts | ip_bytes | orig_bytes | resp_bytes | orig_pkts | resp_pkts
//!          | orig_ip_bytes | resp_ip_bytes | duration | score (alerts)
//! VALUE   := NUMBER [ k | M | G ]  (counts: ×10³, ×10⁶, ×10⁹)
//!          | NUMBER [ us | ms | s | m | h | d ]  (duration; bare numbers are seconds)
//! ```
//!
//! `host`, `net` and `port` without a direction match either side. `bytes` is
//! `orig_bytes + resp_bytes` (payload), `pkts` and `ip_bytes` likewise. Errors carry the
//! 1-based column of the offending token.

use std::fmt;
use std::net::IpAddr;

use rusqlite::types::Value;

use crate::addr::{addr_to_blob, net_range};
use crate::blocks::Row;
use tunnelwatch_model::Severity;

/// A filter that cannot be used, with the column (1-based, in characters) of the
/// offending token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("filter error at column {column} ({found}): {message}")]
pub struct FilterError {
    /// 1-based character column.
    pub column: usize,
    /// The token as typed, quoted, or `end of filter`.
    pub found: String,
    /// What was expected or what is wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    LParen,
    RParen,
    Cmp(CmpOp),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
    text: String,
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let (tok, len) = match (c, two.as_str()) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (_, ">=") => (Tok::Cmp(CmpOp::Ge), 2),
            (_, "<=") => (Tok::Cmp(CmpOp::Le), 2),
            (_, "!=") => (Tok::Cmp(CmpOp::Ne), 2),
            (_, "==") => (Tok::Cmp(CmpOp::Eq), 2),
            ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
            ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
            ('=', _) => (Tok::Cmp(CmpOp::Eq), 1),
            ('!', _) => (Tok::Word("not".into()), 1),
            _ => {
                let start = i;
                let mut j = i;
                while j < chars.len()
                    && !chars[j].is_whitespace()
                    && !matches!(chars[j], '(' | ')' | '<' | '>' | '=' | '!')
                {
                    j += 1;
                }
                let w: String = chars[start..j].iter().collect();
                (Tok::Word(w), j - start)
            }
        };
        let text: String = chars[i..i + len].iter().collect();
        out.push(Token { tok, col, text });
        i += len;
    }
    if out.is_empty() {
        return Err(FilterError {
            column: 1,
            found: "end of filter".into(),
            message: "empty filter".into(),
        });
    }
    Ok(out)
}

/// Which side of a flow a predicate looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Either side.
    Any,
    /// The originator (client).
    Src,
    /// The responder (server).
    Dst,
}

/// A numeric field of a flow or alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumField {
    /// `orig_bytes + resp_bytes`.
    Bytes,
    /// `orig_pkts + resp_pkts`.
    Pkts,
    /// `orig_ip_bytes + resp_ip_bytes`.
    IpBytes,
    /// Payload bytes sent by the originator.
    OrigBytes,
    /// Payload bytes sent by the responder.
    RespBytes,
    /// Packets sent by the originator.
    OrigPkts,
    /// Packets sent by the responder.
    RespPkts,
    /// IP bytes sent by the originator.
    OrigIpBytes,
    /// IP bytes sent by the responder.
    RespIpBytes,
    /// Duration in seconds.
    Duration,
    /// Alert score.
    Score,
}

const NUM_FIELDS: &[(&str, NumField)] = &[
    ("bytes", NumField::Bytes),
    ("pkts", NumField::Pkts),
    ("packets", NumField::Pkts),
    ("ip_bytes", NumField::IpBytes),
    ("orig_bytes", NumField::OrigBytes),
    ("resp_bytes", NumField::RespBytes),
    ("orig_pkts", NumField::OrigPkts),
    ("resp_pkts", NumField::RespPkts),
    ("orig_ip_bytes", NumField::OrigIpBytes),
    ("resp_ip_bytes", NumField::RespIpBytes),
    ("duration", NumField::Duration),
    ("score", NumField::Score),
];

const KNOWN: &str = "host, net, port (with src/dst), proto, service, conn_state, cause, uid, \
community_id, history, bytes, pkts, ip_bytes, orig_/resp_ bytes/pkts/ip_bytes, duration; \
alerts: detector, category, severity, score";

/// A predicate.
#[derive(Clone, Debug, PartialEq)]
pub enum Pred {
    /// `host ADDR`.
    Host(Dir, IpAddr),
    /// `net ADDR/LEN`.
    Net(Dir, IpAddr, u8),
    /// `port [CMP] N`.
    Port(Dir, CmpOp, u16),
    /// A text field equal to a value: (column, value).
    Text(&'static str, String),
    /// `service NAME`: one of the comma-joined names.
    Service(String),
    /// `NUMFIELD CMP VALUE`.
    Num(NumField, CmpOp, f64),
    /// `severity [CMP] LEVEL`.
    Severity(CmpOp, Severity),
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
    /// A predicate, with the column where it starts.
    Pred(Pred, usize),
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    end_col: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn err_here(&self, message: impl Into<String>) -> FilterError {
        match self.peek() {
            Some(t) => FilterError {
                column: t.col,
                found: format!("'{}'", t.text),
                message: message.into(),
            },
            None => FilterError {
                column: self.end_col,
                found: "end of filter".into(),
                message: message.into(),
            },
        }
    }

    fn keyword(&self) -> Option<String> {
        match self.peek() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while matches!(self.keyword().as_deref(), Some("or" | "||")) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while matches!(self.keyword().as_deref(), Some("and" | "&&")) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.or()?;
                match self.peek() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => {
                        self.pos += 1;
                        Ok(e)
                    }
                    _ => Err(self.err_here("expected ')'")),
                }
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Word(_)) => self.pred(),
            Some(_) => Err(self.err_here("expected a field name, 'not' or '('")),
            None => Err(self.err_here("expected a field name, 'not' or '('")),
        }
    }

    fn word(&mut self, what: &str) -> Result<(String, usize), FilterError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Word(w),
                col,
                ..
            }) => {
                let r = (w.clone(), *col);
                self.pos += 1;
                Ok(r)
            }
            _ => Err(self.err_here(format!("expected {what}"))),
        }
    }

    fn cmp(&mut self) -> Option<CmpOp> {
        if let Some(Token {
            tok: Tok::Cmp(op), ..
        }) = self.peek()
        {
            let op = *op;
            self.pos += 1;
            Some(op)
        } else {
            None
        }
    }

    fn pred(&mut self) -> Result<Expr, FilterError> {
        let start = self.peek().map_or(self.end_col, |t| t.col);
        let (first, first_col) = self.word("a field name")?;
        let mut name = first.to_ascii_lowercase();
        let mut dir = Dir::Any;
        if name == "src" || name == "dst" {
            dir = if name == "src" { Dir::Src } else { Dir::Dst };
            let (n, c) = self.word("'host', 'net' or 'port' after src/dst")?;
            name = n.to_ascii_lowercase();
            if !matches!(name.as_str(), "host" | "net" | "port") {
                return Err(FilterError {
                    column: c,
                    found: format!("'{n}'"),
                    message: "expected 'host', 'net' or 'port' after src/dst".into(),
                });
            }
        }
        let p = match name.as_str() {
            "host" => {
                let (v, c) = self.word("an IP address")?;
                let a: IpAddr = v.parse().map_err(|_| FilterError {
                    column: c,
                    found: format!("'{v}'"),
                    message: "not an IP address".into(),
                })?;
                Pred::Host(dir, a)
            }
            "net" => {
                let (v, c) = self.word("a network ADDR/LEN")?;
                let bad = |m: &str| FilterError {
                    column: c,
                    found: format!("'{v}'"),
                    message: m.into(),
                };
                let (a, l) = v.split_once('/').ok_or_else(|| bad("expected ADDR/LEN"))?;
                let a: IpAddr = a.parse().map_err(|_| bad("not an IP address"))?;
                let l: u8 = l
                    .parse()
                    .map_err(|_| bad("prefix length is not a number"))?;
                let max = if a.is_ipv4() { 32 } else { 128 };
                if l > max {
                    return Err(bad(&format!("prefix length above {max}")));
                }
                Pred::Net(dir, a, l)
            }
            "port" => {
                let op = self.cmp().unwrap_or(CmpOp::Eq);
                let (v, c) = self.word("a port number")?;
                let port: u16 = v.parse().map_err(|_| FilterError {
                    column: c,
                    found: format!("'{v}'"),
                    message: "not a port number (0-65535)".into(),
                })?;
                Pred::Port(dir, op, port)
            }
            "proto" => {
                let (v, c) = self.word("tcp, udp, icmp or unknown_transport")?;
                let v = v.to_ascii_lowercase();
                if !matches!(v.as_str(), "tcp" | "udp" | "icmp" | "unknown_transport") {
                    return Err(FilterError {
                        column: c,
                        found: format!("'{v}'"),
                        message: "expected tcp, udp, icmp or unknown_transport".into(),
                    });
                }
                Pred::Text("proto", v)
            }
            "service" => Pred::Service(self.word("a service name")?.0.to_ascii_lowercase()),
            "conn_state" => {
                const STATES: [&str; 13] = [
                    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH",
                    "SHR", "OTH",
                ];
                let (v, c) = self.word("a conn_state code")?;
                let u = v.to_ascii_uppercase();
                if !STATES.contains(&u.as_str()) {
                    return Err(FilterError {
                        column: c,
                        found: format!("'{v}'"),
                        message: format!("unknown conn_state (one of {})", STATES.join(", ")),
                    });
                }
                Pred::Text("conn_state", u)
            }
            "cause" => {
                let (v, c) = self.word("end, status, timeout or evicted")?;
                let v = v.to_ascii_lowercase();
                if !matches!(v.as_str(), "end" | "status" | "timeout" | "evicted") {
                    return Err(FilterError {
                        column: c,
                        found: format!("'{v}'"),
                        message: "expected end, status, timeout or evicted".into(),
                    });
                }
                Pred::Text("cause", v)
            }
            "uid" => Pred::Text("uid", self.word("a uid")?.0),
            "community_id" => Pred::Text("community_id", self.word("a Community ID")?.0),
            "history" => Pred::Text("history", self.word("a history string")?.0),
            "detector" => Pred::Text("detector", self.word("a detector name")?.0),
            "category" => Pred::Text("category", self.word("a category")?.0.to_ascii_lowercase()),
            "severity" => {
                let op = self.cmp().unwrap_or(CmpOp::Eq);
                let (v, c) = self.word("a severity")?;
                let s = Severity::parse(&v.to_ascii_lowercase()).ok_or_else(|| FilterError {
                    column: c,
                    found: format!("'{v}'"),
                    message: "expected info, low, medium, high or critical".into(),
                })?;
                Pred::Severity(op, s)
            }
            other => {
                let Some(&(_, f)) = NUM_FIELDS.iter().find(|(n, _)| *n == other) else {
                    return Err(FilterError {
                        column: first_col,
                        found: format!("'{first}'"),
                        message: format!("unknown field (known: {KNOWN})"),
                    });
                };
                let Some(op) = self.cmp() else {
                    return Err(self.err_here(format!(
                        "expected a comparison (=, !=, <, <=, >, >=) after '{other}'"
                    )));
                };
                let (v, c) = self.word("a number")?;
                let n = number(&v, f == NumField::Duration).ok_or_else(|| FilterError {
                    column: c,
                    found: format!("'{v}'"),
                    message: if f == NumField::Duration {
                        "expected a duration (e.g. 60, 60s, 500ms, 5m, 2h)".into()
                    } else {
                        "expected a number (e.g. 1000, 10k, 2M)".into()
                    },
                })?;
                Pred::Num(f, op, n)
            }
        };
        Ok(Expr::Pred(p, start))
    }
}

fn number(s: &str, duration: bool) -> Option<f64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult = if duration {
        match unit {
            "" | "s" => 1.0,
            "us" => 1e-6,
            "ms" => 1e-3,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        }
    } else {
        match unit {
            "" => 1.0,
            "k" | "K" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            _ => return None,
        }
    };
    v.is_finite().then_some(v * mult)
}

/// Parses a filter.
pub fn parse(input: &str) -> Result<Expr, FilterError> {
    let toks = lex(input)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end_col: input.chars().count() + 1,
    };
    let e = p.or()?;
    if p.peek().is_some() {
        return Err(p.err_here("expected 'and', 'or' or the end of the filter"));
    }
    Ok(e)
}

/// What a filter is applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The `flows` table.
    Flows,
    /// The `alerts` table.
    Alerts,
}

/// A compiled filter: a SQL condition and its parameters, in order.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// SQL condition (`1` when there is no filter).
    pub sql: String,
    /// Bound parameters for the `?` in `sql`.
    pub params: Vec<Value>,
}

/// Parses and compiles `input` for `target`; an empty input matches everything.
pub fn compile(input: &str, target: Target) -> Result<Compiled, FilterError> {
    if input.trim().is_empty() {
        return Ok(Compiled {
            sql: "1".into(),
            params: Vec::new(),
        });
    }
    let e = parse(input)?;
    let mut c = Compiled::default();
    emit(&e, target, &mut c)?;
    Ok(c)
}

/// A filter of stored flows, evaluated on the rows of flow blocks.
#[derive(Clone, Debug)]
pub(crate) struct FlowFilter {
    expr: Option<Expr>,
    hosts: Option<Vec<[u8; 16]>>,
}

impl FlowFilter {
    /// Parses `input` (empty: every flow) and checks that its fields apply to flows.
    pub(crate) fn new(input: &str) -> Result<FlowFilter, FilterError> {
        compile(input, Target::Flows)?;
        if input.trim().is_empty() {
            return Ok(FlowFilter {
                expr: None,
                hosts: None,
            });
        }
        let e = parse(input)?;
        let hosts = needed_hosts(&e);
        Ok(FlowFilter {
            expr: Some(e),
            hosts,
        })
    }

    /// Addresses of which a matching flow holds at least one (as either side), when
    /// the filter says so; `None`: any flow may match.
    pub(crate) fn hosts(&self) -> Option<&[[u8; 16]]> {
        self.hosts.as_deref()
    }

    /// Whether a stored row matches.
    pub(crate) fn matches(&self, r: &Row<'_>) -> bool {
        self.expr.as_ref().is_none_or(|e| eval(e, r))
    }
}

/// The hosts one of which every match holds: a host predicate's address, the smaller
/// set of an `and`, the union of an `or` whose both sides have one.
fn needed_hosts(e: &Expr) -> Option<Vec<[u8; 16]>> {
    match e {
        Expr::Pred(Pred::Host(_, a), _) => Some(vec![addr_to_blob(*a)]),
        Expr::And(a, b) => match (needed_hosts(a), needed_hosts(b)) {
            (Some(x), Some(y)) => Some(if x.len() <= y.len() { x } else { y }),
            (x, y) => x.or(y),
        },
        Expr::Or(a, b) => {
            let mut x = needed_hosts(a)?;
            x.extend(needed_hosts(b)?);
            Some(x)
        }
        _ => None,
    }
}

fn cmp_num(a: f64, op: CmpOp, b: f64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

fn eval(e: &Expr, r: &Row<'_>) -> bool {
    match e {
        Expr::And(a, b) => eval(a, r) && eval(b, r),
        Expr::Or(a, b) => eval(a, r) || eval(b, r),
        Expr::Not(a) => !eval(a, r),
        Expr::Pred(p, _) => eval_pred(p, r),
    }
}

fn eval_pred(p: &Pred, r: &Row<'_>) -> bool {
    let sides = |dir: Dir, f: &dyn Fn(bool) -> bool| match dir {
        Dir::Any => f(true) || f(false),
        Dir::Src => f(true),
        Dir::Dst => f(false),
    };
    match p {
        Pred::Host(dir, a) => {
            let b = addr_to_blob(*a);
            sides(*dir, &|orig| {
                if orig {
                    r.orig_h == b
                } else {
                    r.resp_h == b
                }
            })
        }
        Pred::Net(dir, a, l) => {
            let (lo, hi) = net_range(*a, *l);
            sides(*dir, &|orig| {
                let h = if orig { r.orig_h } else { r.resp_h };
                lo <= h && h <= hi
            })
        }
        Pred::Port(dir, op, port) => sides(*dir, &|orig| {
            let v = if orig { r.orig_p } else { r.resp_p };
            cmp_num(f64::from(v), *op, f64::from(*port))
        }),
        Pred::Text(column, v) => {
            let have = match *column {
                "proto" => r.proto,
                "conn_state" => r.conn_state,
                "cause" => r.cause,
                "uid" => r.uid,
                "community_id" => r.community_id,
                "history" => r.history,
                _ => return false,
            };
            have == v
        }
        Pred::Service(v) => {
            let list = r.service.unwrap_or("");
            list.split(',').any(|s| s == v)
        }
        Pred::Num(f, op, v) => {
            let n = match f {
                NumField::Bytes => r.orig_bytes.saturating_add(r.resp_bytes) as f64,
                NumField::Pkts => r.orig_pkts.saturating_add(r.resp_pkts) as f64,
                NumField::IpBytes => r.orig_ip_bytes.saturating_add(r.resp_ip_bytes) as f64,
                NumField::OrigBytes => r.orig_bytes as f64,
                NumField::RespBytes => r.resp_bytes as f64,
                NumField::OrigPkts => r.orig_pkts as f64,
                NumField::RespPkts => r.resp_pkts as f64,
                NumField::OrigIpBytes => r.orig_ip_bytes as f64,
                NumField::RespIpBytes => r.resp_ip_bytes as f64,
                NumField::Duration => r.duration,
                NumField::Score => return false,
            };
            cmp_num(n, *op, *v)
        }
        Pred::Severity(..) => false,
    }
}

fn side(dir: Dir) -> &'static [&'static str] {
    match dir {
        Dir::Any => &["orig", "resp"],
        Dir::Src => &["orig"],
        Dir::Dst => &["resp"],
    }
}

fn emit(e: &Expr, t: Target, c: &mut Compiled) -> Result<(), FilterError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            c.sql.push('(');
            emit(a, t, c)?;
            c.sql.push_str(if matches!(e, Expr::And(..)) {
                " AND "
            } else {
                " OR "
            });
            emit(b, t, c)?;
            c.sql.push(')');
        }
        Expr::Not(a) => {
            // Comparisons with NULL (an alert without resp_h) are not true either way.
            c.sql.push_str("(NOT coalesce(");
            emit(a, t, c)?;
            c.sql.push_str(", 0))");
        }
        Expr::Pred(p, col) => pred(p, *col, t, c)?,
    }
    Ok(())
}

fn not_for(t: Target, field: &str, col: usize) -> FilterError {
    let what = match t {
        Target::Flows => "flows",
        Target::Alerts => "alerts",
    };
    FilterError {
        column: col,
        found: format!("'{field}'"),
        message: format!("field does not apply to {what}"),
    }
}

fn pred(p: &Pred, col: usize, t: Target, c: &mut Compiled) -> Result<(), FilterError> {
    let parts: Vec<String> = match p {
        Pred::Host(dir, a) => side(*dir)
            .iter()
            .map(|s| {
                c.params.push(Value::Blob(addr_to_blob(*a).to_vec()));
                format!("{s}_h = ?")
            })
            .collect(),
        Pred::Net(dir, a, l) => {
            let (lo, hi) = net_range(*a, *l);
            side(*dir)
                .iter()
                .map(|s| {
                    c.params.push(Value::Blob(lo.to_vec()));
                    c.params.push(Value::Blob(hi.to_vec()));
                    format!("{s}_h BETWEEN ? AND ?")
                })
                .collect()
        }
        Pred::Port(dir, op, port) => {
            if t == Target::Alerts {
                return Err(not_for(t, "port", col));
            }
            side(*dir)
                .iter()
                .map(|s| {
                    c.params.push(Value::Integer(i64::from(*port)));
                    format!("{s}_p {} ?", op.sql())
                })
                .collect()
        }
        Pred::Text(column, v) => {
            let ok = match t {
                Target::Flows => !matches!(*column, "detector" | "category"),
                Target::Alerts => matches!(*column, "detector" | "category" | "community_id"),
            };
            if !ok {
                return Err(not_for(t, column, col));
            }
            c.params.push(Value::Text(v.clone()));
            vec![format!("{column} = ?")]
        }
        Pred::Service(v) => {
            if t == Target::Alerts {
                return Err(not_for(t, "service", col));
            }
            c.params.push(Value::Text(format!(",{v},")));
            vec!["instr(',' || coalesce(service, '') || ',', ?) > 0".into()]
        }
        Pred::Severity(op, s) => {
            if t == Target::Flows {
                return Err(not_for(t, "severity", col));
            }
            c.params.push(Value::Integer(s.rank()));
            vec![format!("severity {} ?", op.sql())]
        }
        Pred::Num(f, op, v) => {
            let expr = match (f, t) {
                (NumField::Score, Target::Alerts) => "score",
                (NumField::Score, Target::Flows) => return Err(not_for(t, "score", col)),
                (_, Target::Alerts) => return Err(not_for(t, "a flow counter", col)),
                (NumField::Bytes, _) => "(orig_bytes + resp_bytes)",
                (NumField::Pkts, _) => "(orig_pkts + resp_pkts)",
                (NumField::IpBytes, _) => "(orig_ip_bytes + resp_ip_bytes)",
                (NumField::OrigBytes, _) => "orig_bytes",
                (NumField::RespBytes, _) => "resp_bytes",
                (NumField::OrigPkts, _) => "orig_pkts",
                (NumField::RespPkts, _) => "resp_pkts",
                (NumField::OrigIpBytes, _) => "orig_ip_bytes",
                (NumField::RespIpBytes, _) => "resp_ip_bytes",
                (NumField::Duration, _) => "duration",
            };
            c.params.push(Value::Real(*v));
            vec![format!("{expr} {} ?", op.sql())]
        }
    };
    if parts.len() == 1 {
        c.sql.push_str(&parts[0]);
    } else {
        c.sql.push('(');
        c.sql.push_str(&parts.join(" OR "));
        c.sql.push(')');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> FilterError {
        compile(input, Target::Flows).unwrap_err()
    }

    #[test]
    fn issue_example_compiles_with_every_value_bound() {
        let c = compile(
            "host 10.1.1.9 and port 3128 and bytes > 1000 and duration > 60s",
            Target::Flows,
        )
        .unwrap();
        assert_eq!(
            c.sql,
            "((((orig_h = ? OR resp_h = ?) AND (orig_p = ? OR resp_p = ?)) AND (orig_bytes + resp_bytes) > ?) AND duration > ?)"
        );
        assert_eq!(c.params.len(), 6);
        assert_eq!(c.params[2], Value::Integer(3128));
        assert_eq!(c.params[4], Value::Real(1000.0));
        assert_eq!(c.params[5], Value::Real(60.0));
        assert!(!c.sql.contains("10.1.1.9"));
    }

    #[test]
    fn precedence_not_binds_tighter_than_and_than_or() {
        let e = parse("not proto udp and port 53 or service dns").unwrap();
        match e {
            Expr::Or(l, _) => match *l {
                Expr::And(nl, _) => assert!(matches!(*nl, Expr::Not(_))),
                other => panic!("expected And, got {other:?}"),
            },
            other => panic!("expected Or, got {other:?}"),
        }
    }

    #[test]
    fn parentheses_group() {
        let e = parse("src host 10.0.0.1 and (dst port 80 || dst port 443)").unwrap();
        match e {
            Expr::And(_, r) => assert!(matches!(*r, Expr::Or(..))),
            other => panic!("expected And, got {other:?}"),
        }
    }

    #[test]
    fn units_scale_values() {
        assert_eq!(number("500ms", true), Some(0.5));
        assert_eq!(number("5m", true), Some(300.0));
        assert_eq!(number("2h", true), Some(7200.0));
        assert_eq!(number("10k", false), Some(10_000.0));
        assert_eq!(number("2M", false), Some(2e6));
        assert_eq!(number("5m", false), None);
        assert_eq!(number("x", false), None);
    }

    #[test]
    fn unknown_field_points_at_its_column() {
        let e = err("host 10.0.0.1 and hots 10.0.0.2");
        assert_eq!(e.column, 19);
        assert_eq!(e.found, "'hots'");
        assert!(e.message.starts_with("unknown field"), "{e}");
    }

    #[test]
    fn missing_value_points_at_end() {
        let e = err("bytes >");
        assert_eq!(e.column, 8);
        assert_eq!(e.found, "end of filter");
    }

    #[test]
    fn bad_address_and_prefix_are_located() {
        assert_eq!(err("host 10.0.0.300").column, 6);
        let e = err("not net 10.0.0.0/33");
        assert_eq!(e.column, 9);
        assert!(e.message.contains("above 32"), "{e}");
    }

    #[test]
    fn unbalanced_parenthesis_is_reported() {
        let e = err("(port 80 or port 443");
        assert_eq!(e.found, "end of filter");
        assert!(e.message.contains("')'"));
        let e = err("port 80)");
        assert_eq!(e.column, 8);
    }

    #[test]
    fn missing_operator_between_predicates() {
        let e = err("port 80 port 443");
        assert_eq!(e.column, 9);
        assert!(e.message.contains("'and', 'or'"), "{e}");
    }

    #[test]
    fn comparison_required_for_counters() {
        let e = err("bytes 1000");
        assert_eq!(e.column, 7);
        assert!(e.message.contains("comparison"));
    }

    #[test]
    fn conn_state_values_are_checked() {
        assert!(compile("conn_state s0", Target::Flows).is_ok());
        let e = err("conn_state S9");
        assert_eq!(e.column, 12);
    }

    #[test]
    fn alert_fields_are_checked_per_target() {
        assert!(compile("severity >= high and host 10.0.0.1", Target::Alerts).is_ok());
        let e = compile("port 80", Target::Alerts).unwrap_err();
        assert!(e.message.contains("alerts"), "{e}");
        let e = err("severity high");
        assert!(e.message.contains("flows"), "{e}");
    }

    #[test]
    fn injection_attempt_is_just_a_bad_value() {
        let e = err("service x') OR 1=1 --");
        // `service x'` parses; the `)` that follows is the error.
        assert_eq!(e.column, 11);
        let c = compile("uid C1';DROP_TABLE_flows", Target::Flows).unwrap();
        assert_eq!(c.sql, "uid = ?");
    }

    #[test]
    fn net_binds_a_blob_range() {
        let c = compile("not src net 10.0.0.0/8", Target::Flows).unwrap();
        assert_eq!(c.sql, "(NOT coalesce(orig_h BETWEEN ? AND ?, 0))");
        assert_eq!(c.params.len(), 2);
    }

    #[test]
    fn empty_filter_matches_all_but_blank_parse_fails() {
        assert_eq!(compile("  ", Target::Flows).unwrap().sql, "1");
        assert!(parse("").is_err());
    }
}
