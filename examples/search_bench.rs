//! Search benchmark (README, Benchmarks; loadtest/README.md): seeds a store with chat-like messages in Chinese
//! and English through the store layer (the same writes, tokens and index as a send), then times searches.
//!
//! ```sh
//! cargo run --release --example search_bench -- <database-url> [messages] [conversations]
//! ```
//!
//! An empty database is seeded first (default 1,000,000 messages in 10,000 direct conversations among 2,000
//! users; user 1 is in 1,000 of them, everyone else in about 9); a seeded one is only queried. Reports JSON:
//! seeding rate, the text and index sizes, and per query and viewer the p50/p99/max latency of a first page
//! (20 results) over 300 runs.

use std::time::{Duration, Instant};

use gochat::domain::search::parse_query;
use gochat::domain::ConversationId;
use gochat::store::{NewMessage, NewUser, Stores};

/// Two-character Chinese words, common in chat, and English words; sentences draw from both.
const ZH: &[&str] = &[
    "我们", "今天", "明天", "上海", "北京", "开会", "时间", "晚上", "吃饭", "工作", "项目", "周末", "电影", "朋友",
    "公司", "地铁", "天气", "下雨", "咖啡", "老板", "客户", "报告", "数据", "手机", "电脑", "问题", "解决", "准备",
    "出差", "机场", "酒店", "火车", "医院", "学校", "老师", "学生", "孩子", "妈妈", "爸爸", "生日", "快乐", "谢谢",
    "没有", "可以", "知道", "觉得", "已经", "现在", "马上", "一起", "看看", "听说", "真的", "好的", "早上", "下午",
    "中午", "附近", "餐厅", "火锅", "深圳", "广州", "杭州", "成都", "南京", "武汉", "西安", "重庆", "香港", "台北",
];
const EN: &[&str] = &[
    "the", "meeting", "today", "tomorrow", "lunch", "dinner", "project", "deadline", "report", "please", "thanks",
    "sounds", "good", "call", "later", "office", "weekend", "movie", "coffee", "train", "flight", "hotel", "budget",
    "review", "design", "release", "server", "client", "bug", "fixed", "deploy", "ok", "sure", "maybe", "when",
    "where", "shanghai", "beijing", "party", "birthday", "happy", "great", "idea", "let's", "go", "now", "soon",
];

/// A small deterministic generator (xorshift64*): the same store every run, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Skewed towards the start of the list (a word's rank decides how common it is).
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

fn sentence(rng: &mut Rng) -> String {
    let words = 3 + rng.below(10);
    let chinese = rng.below(3) != 0; // two thirds mostly Chinese
    let mut s = String::new();
    for i in 0..words {
        if chinese && rng.below(6) != 0 {
            s.push_str(ZH[rng.skewed(ZH.len())]);
            if rng.below(4) == 0 {
                s.push('，');
            }
        } else {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(EN[rng.skewed(EN.len())]);
        }
    }
    if rng.below(10) == 0 {
        s.push_str(" 🎉");
    }
    s
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "sqlite:///tmp/search-bench/gochat.db".into());
    let messages: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let conversations: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let users = (conversations / 5).max(20);
    let stores = Stores::open(&url, 16).await?;
    let mut report =
        serde_json::json!({"url": url.split('@').next_back(), "messages": messages, "conversations": conversations});

    let first = stores.users.user_by_username("bench0").await?;
    let base = match first {
        Some(u) => u.id,
        None => {
            let started = Instant::now();
            let mut ids = Vec::with_capacity(users);
            for i in 0..users {
                let new = NewUser {
                    username: format!("bench{i}"),
                    nickname: format!("用户{i}"),
                    sex: 0,
                    password_hash:
                        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$2YHfWqkpNoV4uYFNgqSm0qC9wHZ0m3F0bq4w5r0Z0vQ".into(),
                };
                ids.push(stores.users.create_user(new).await?.id);
            }
            // Pairs: user 0 with the first 1,000 others (a heavy user), the rest in a ring of strides.
            let mut pairs = Vec::with_capacity(conversations);
            for k in 1..=(conversations / 10).min(users - 1) {
                pairs.push((ids[0], ids[k]));
            }
            let mut stride = 1;
            while pairs.len() < conversations {
                for i in 1..users {
                    if pairs.len() == conversations {
                        break;
                    }
                    let j = 1 + (i - 1 + stride) % (users - 1);
                    pairs.push((ids[i], ids[j]));
                }
                stride += 1;
            }
            for &(a, b) in &pairs {
                let r = stores.friends.create_request(a, b, "hi").await?;
                stores.friends.accept_request(r.id).await?;
            }
            // Appends run concurrently (the store's group commit writes them in batches), one task per slice of
            // conversations, so that each conversation's seqs are allocated in order.
            let tasks = 64;
            let per_conversation = messages / conversations;
            let mut handles = Vec::new();
            for t in 0..tasks {
                let stores = stores.clone();
                let mine: Vec<(i64, i64)> = pairs.iter().copied().skip(t).step_by(tasks).collect();
                handles.push(tokio::spawn(async move {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                    for round in 0..per_conversation {
                        for &(a, b) in &mine {
                            let (from, to) = if rng.below(2) == 0 { (a, b) } else { (b, a) };
                            let m = NewMessage {
                                conversation_id: ConversationId::direct(a, b),
                                from_user_id: from,
                                to_user_id: Some(to),
                                group_id: None,
                                kind: "text",
                                body: Some(sentence(&mut rng)),
                                file_id: None,
                                client_msg_id: None,
                                reply_to_id: None,
                                meta: None,
                                mentions: Vec::new(),
                                forwarded: false,
                                item_files: Vec::new(),
                            };
                            stores.messages.append(m).await?;
                        }
                        if t == 0 && round % 10 == 9 {
                            eprintln!("round {}/{per_conversation}", round + 1);
                        }
                    }
                    anyhow::Ok(())
                }));
            }
            for h in handles {
                h.await??;
            }
            let secs = started.elapsed().as_secs_f64();
            report["seed_seconds"] = serde_json::json!(secs);
            report["seed_messages_per_second"] = serde_json::json!(messages as f64 / secs);
            ids[0]
        }
    };

    // Viewers: user 1 (the heavy one, ~100,000 messages) and ordinary users (~900 messages each).
    let mut rng = Rng(42);
    let mut results = serde_json::Map::new();
    for q in ["上海", "meeting", "上海 开会", "会议室", "🎉"] {
        let query = parse_query(q);
        for (viewer_kind, pick) in [("heavy", 0usize), ("typical", 1)] {
            let mut times = Vec::new();
            let mut hits = 0;
            for _ in 0..300 {
                let viewer = if pick == 0 { base } else { base + 1 + rng.below(users - 1) as i64 };
                let t = Instant::now();
                let found = stores.search.search(viewer, &query, None, i64::MAX, 21).await?;
                times.push(t.elapsed());
                hits += found.len();
            }
            times.sort();
            results.insert(
                format!("{q} / {viewer_kind}"),
                serde_json::json!({
                    "p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99),
                    "max_ms": percentile(&times, 1.0), "mean_results": hits as f64 / 300.0,
                }),
            );
        }
    }
    report["queries"] = serde_json::Value::Object(results);
    println!("{}", serde_json::to_string_pretty(&report)?);
    stores.close().await;
    Ok(())
}
