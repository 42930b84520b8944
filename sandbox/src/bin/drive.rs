//! SANDBOX load driver for the benchmarks in `infra/bench/` (not a product):
//! sends prepared HTTP/1.1 requests to 127.0.0.1 from keep-alive connections,
//! each taking the next request once its previous one was answered (closed
//! loop), and prints one JSON line: answers by status, wall time, latency
//! quantiles. Native, so the client takes a small share of the 2 cores that
//! the Python driver (`common.drive`) takes.
//!
//! usage: drive --port P --requests FILE [--concurrency 64] [--timeout-s 120]
//!
//! FILE holds the requests back to back, each as its length in ASCII
//! decimal, `\n`, then the raw request bytes. Answers must carry a
//! `Content-Length` (the relay's do).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    port: u16,
    requests: String,
    concurrency: usize,
    timeout: Duration,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        port: 0,
        requests: String::new(),
        concurrency: 64,
        timeout: Duration::from_secs(120),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{a}: not a number: {v}"))
        };
        match a.as_str() {
            "--port" => o.port = num(&v)? as u16,
            "--requests" => o.requests = v,
            "--concurrency" => o.concurrency = num(&v)?.max(1) as usize,
            "--timeout-s" => o.timeout = Duration::from_secs(num(&v)?),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.port == 0 || o.requests.is_empty() {
        return Err(
            "usage: drive --port P --requests FILE [--concurrency 64] [--timeout-s 120]".into(),
        );
    }
    Ok(o)
}

fn parse(file: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut rest = file;
    while !rest.is_empty() {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("a length without its newline")?;
        let len: usize = std::str::from_utf8(&rest[..nl])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or("a bad length line")?;
        rest = &rest[nl + 1..];
        if rest.len() < len {
            return Err("a request cut short".into());
        }
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    Ok(out)
}

/// Reads one answer; returns its status and whether the server closes.
async fn answer(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("no status"))?;
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("no content-length"))?;
            let close = head.lines().any(|l| l.trim() == "connection: close");
            let total = end + 4 + length;
            while buf.len() < total {
                read_more(sock, buf).await?;
            }
            buf.drain(..total);
            return Ok((status, close));
        }
        read_more(sock, buf).await?;
    }
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = sock.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("drive: {e}");
            std::process::exit(2);
        }
    };
    let file = std::fs::read(&o.requests).unwrap_or_else(|e| {
        eprintln!("drive: {}: {e}", o.requests);
        std::process::exit(2)
    });
    let requests = Arc::new(parse(&file).unwrap_or_else(|e| {
        eprintln!("drive: {}: {e}", o.requests);
        std::process::exit(2)
    }));
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(requests.len())));
    let started = Instant::now();
    let deadline = started + o.timeout;
    let clients: Vec<_> = (0..o.concurrency)
        .map(|_| {
            let (requests, next, results) = (requests.clone(), next.clone(), results.clone());
            let port = o.port;
            tokio::spawn(async move {
                let mut sock: Option<TcpStream> = None;
                let mut buf = Vec::new();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() || Instant::now() > deadline {
                        break;
                    }
                    let t0 = Instant::now();
                    let got = async {
                        if sock.is_none() {
                            let s = TcpStream::connect(("127.0.0.1", port)).await?;
                            s.set_nodelay(true)?;
                            sock = Some(s);
                            buf.clear();
                        }
                        let s = sock.as_mut().expect("connected");
                        s.write_all(&requests[i]).await?;
                        answer(s, &mut buf).await
                    }
                    .await;
                    let status = match got {
                        Ok((status, close)) => {
                            if close {
                                sock = None;
                            }
                            status
                        }
                        Err(_) => {
                            sock = None;
                            0
                        }
                    };
                    mine.push((status, t0.elapsed()));
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
            })
        })
        .collect();
    for c in clients {
        let _ = c.await;
    }
    let wall = started.elapsed();
    let results = results.lock().unwrap_or_else(|e| e.into_inner());
    let mut statuses = std::collections::BTreeMap::new();
    for (s, _) in results.iter() {
        *statuses.entry(s.to_string()).or_insert(0u64) += 1;
    }
    let mut lat: Vec<f64> = results
        .iter()
        .map(|(_, d)| d.as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
    };
    println!(
        "{}",
        serde_json::json!({
            "sent": results.len(),
            "statuses": statuses,
            "wall_s": wall.as_secs_f64(),
            "p50_ms": q(0.50),
            "p99_ms": q(0.99),
        })
    );
}
