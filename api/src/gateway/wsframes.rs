//! Which client-to-server WebSocket frames are use, read from the byte
//! stream as it is copied (no buffering, no unmasking, no span per frame).
//!
//! Rule: a data frame (text, binary or continuation) whose payload is
//! larger than [`KEEPALIVE_MAX`] bytes counts; control frames (ping, pong,
//! close) and small data frames never do. Why: an idle code-server tab is
//! not silent. VS Code's remote protocol (`PersistentProtocol` in
//! `src/vs/base/parts/ipc/common/ipc.net.ts`) sends a `KeepAlive` message
//! every 5 s and `Ack` messages for what it received; both are a bare
//! 13-byte protocol header (type, id, ack, length) with no body, so a
//! frame of at most 32 bytes (13 plus permessage-deflate overhead) is
//! heartbeat, and typing (a request with a JSON or binary body) is larger.
//! Counting every frame is the code-server #5008 trap (an open tab never
//! idles). A reconnect is an upgrade, not a frame: it does not count.
//! Not measured against a live tab in this change; see the README.

/// Largest payload of a frame that is heartbeat, not use.
pub const KEEPALIVE_MAX: u64 = 32;

/// Walks frame headers across reads.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Partial header bytes carried to the next read.
    head: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
}

impl FrameScanner {
    /// Feeds the next bytes of the client-to-server stream; returns how many
    /// frames that count as use started in them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> usize {
        let mut used = 0;
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
            if matches!(opcode, 0..=2) && len > KEEPALIVE_MAX {
                used += 1;
            }
            self.skip = len;
            self.head.clear();
        }
        used
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
    fn heartbeats_and_control_frames_are_not_use() {
        let mut s = FrameScanner::default();
        let mut bytes = frame(2, 13);
        bytes.extend(frame(9, 4));
        bytes.extend(frame(10, 0));
        bytes.extend(frame(1, 32));
        assert_eq!(s.feed(&bytes), 0);
    }

    #[test]
    fn larger_data_frames_count_across_any_split() {
        let mut bytes = frame(1, 200);
        bytes.extend(frame(2, 13));
        bytes.extend(frame(2, 70_000));
        bytes.extend(frame(2, 40));
        for chunk in [1, 3, 7, 1000, bytes.len()] {
            let mut s = FrameScanner::default();
            let used: usize = bytes.chunks(chunk).map(|c| s.feed(c)).sum();
            assert_eq!(used, 3, "chunk {chunk}");
        }
    }
}
