//! Which client-to-server WebSocket traffic is use, read from the byte
//! stream as it is copied (no buffering, no unmasking, no span per frame).
//!
//! An idle code-server tab is not silent, so counting every frame is the
//! code-server #5008 trap (an open tab never idles). Measured on
//! code-server 4.139.1 with Chromium (permessage-deflate on, sizes are wire
//! payload bytes), after the workbench settled:
//!
//! | traffic | management socket | extension-host socket |
//! |---|---|---|
//! | idle tab, every 5 s | 7 data frames: 7-9, 15, 15, 16-19, 18-25, 24, 48-53 bytes | 1 frame of 4-8 bytes (82 at most once in 40 s) |
//! | one key in the editor | unchanged | 250 + 40 bytes |
//! | 3 keys in the editor (9 s) | 16 frames, up to 57 bytes | 7 frames, up to 34 bytes |
//! | `echo hello` typed in the terminal (4 s) | 19 frames of 17-19 bytes | 12 frames, 14-97 bytes |
//!
//! Neither size nor count alone separates them (idle frames reach 53
//! bytes; terminal keystrokes are 18). The rule: a data frame (text,
//! binary, continuation) counts when its payload is over [`LARGE`] bytes,
//! or when it is beyond the [`BURST`]-th data frame of its connection in a
//! [`WINDOW_MS`] window (idle: 7). Ping, pong and close never count. A
//! reconnect is an upgrade, not a frame, so it counts for nothing (the
//! JupyterHub culler trap). A single terminal keystroke is below the
//! rule; typing a command is above it. End to end through the gateway, a
//! real tab recorded no activity during 76 s of idling after it settled
//! (about 35 s after load), and its first keystroke did.

/// Payload bytes above which one data frame is use.
pub const LARGE: u64 = 100;
/// Data frames per window one connection may send while idle.
pub const BURST: u32 = 12;
/// The window, in milliseconds.
pub const WINDOW_MS: u64 = 5_000;

/// What one read carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Data frames that started in it.
    pub data: u32,
    /// Of those, frames over [`LARGE`] bytes.
    pub large: u32,
}

/// Applies the rule to one connection's frames over time.
#[derive(Debug, Default)]
pub struct UseMeter {
    window_start: u64,
    count: u32,
}

impl UseMeter {
    /// Whether what `seen` carried at `now_ms` is use.
    pub fn observe(&mut self, now_ms: u64, seen: Seen) -> bool {
        if seen.data == 0 {
            return false;
        }
        if now_ms.saturating_sub(self.window_start) >= WINDOW_MS {
            self.window_start = now_ms;
            self.count = 0;
        }
        self.count = self.count.saturating_add(seen.data);
        seen.large > 0 || self.count > BURST
    }
}

/// Walks frame headers across reads.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Partial header bytes carried to the next read.
    head: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
}

impl FrameScanner {
    /// Feeds the next bytes of the client-to-server stream; returns the
    /// data frames whose headers were completed in them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Seen {
        let mut seen = Seen::default();
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(bytes.len());
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let want = self.header_len();
            let take = want.saturating_sub(self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.head.len() < self.header_len() {
                continue;
            }
            let (opcode, len) = self.parse();
            if matches!(opcode, 0..=2) {
                seen.data += 1;
                if len > LARGE {
                    seen.large += 1;
                }
            }
            self.skip = len;
            self.head.clear();
        }
        seen
    }

    /// Header length as far as known from the bytes seen so far.
    fn header_len(&self) -> usize {
        let Some(&b1) = self.head.get(1) else { return 2 };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + mask
    }

    fn parse(&self) -> (u8, u64) {
        let opcode = self.head[0] & 0x0f;
        let len = match self.head[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or([0; 8])),
            n => u64::from(n),
        };
        (opcode, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    #[test]
    fn frames_are_found_across_any_split() {
        let mut bytes = frame(1, 200);
        bytes.extend(frame(2, 13));
        bytes.extend(frame(9, 4));
        bytes.extend(frame(2, 70_000));
        bytes.extend(frame(2, 40));
        for chunk in [1, 3, 7, 1000, bytes.len()] {
            let mut s = FrameScanner::default();
            let (data, large) =
                bytes.chunks(chunk).map(|c| s.feed(c)).fold((0, 0), |(d, l), x| (d + x.data, l + x.large));
            assert_eq!((data, large), (4, 2), "chunk {chunk}");
        }
    }

    /// The measured idle pattern of the management socket: 7 frames of at most 53 bytes every 5 s.
    fn idle_burst() -> Vec<u8> {
        [8, 51, 15, 15, 24, 18, 19].iter().flat_map(|&n| frame(2, n)).collect()
    }

    #[test]
    fn an_idle_code_server_tab_is_not_use() {
        let mut scanner = FrameScanner::default();
        let mut meter = UseMeter::default();
        for tick in 0..100u64 {
            let seen = scanner.feed(&idle_burst());
            assert_eq!(seen.data, 7);
            assert!(!meter.observe(tick * 5_000, seen), "tick {tick}");
            // Pings and pongs never count.
            assert!(!meter.observe(tick * 5_000 + 1, scanner.feed(&frame(9, 0))));
        }
    }

    #[test]
    fn an_editor_keystroke_and_terminal_typing_are_use() {
        let mut scanner = FrameScanner::default();
        let mut meter = UseMeter::default();
        assert!(meter.observe(0, scanner.feed(&frame(2, 250))), "one key in the editor");
        let mut terminal = UseMeter::default();
        let used = (0..19u64).filter(|i| terminal.observe(10_000 + i * 200, scanner.feed(&frame(2, 18)))).count();
        assert!(used > 0, "typing a command in the terminal");
    }
}
