//! Just enough STUN (RFC 8489) to route a client's first datagram.
//!
//! A client's ICE connectivity check is a STUN binding request whose USERNAME is
//! `<sfu ufrag>:<client ufrag>`. The IO driver reads the SFU half, finds the participant
//! whose session has that ufrag (one hash lookup), hands the datagram to the room (str0m
//! verifies MESSAGE-INTEGRITY) and, once accepted, learns the client's address.
//! Everything else about STUN is left to str0m.

/// STUN magic cookie.
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Attribute type of USERNAME.
const USERNAME: u16 = 0x0006;
/// Longest USERNAME we look at (RFC 8489 caps it at 509 bytes).
const MAX_USERNAME: usize = 513;

/// True if the datagram looks like STUN (first two bits zero and the magic cookie).
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 2 && data[4..8] == MAGIC
}

/// The local (SFU) ufrag of a STUN binding request, i.e. the part of USERNAME before ':'.
///
/// Returns `None` for anything that is not a well-formed binding request with a USERNAME.
/// Never reads past the buffer, whatever the lengths claim.
pub fn binding_request_ufrag(data: &[u8]) -> Option<&str> {
    if !is_stun(data) {
        return None;
    }
    let msg_type = u16::from_be_bytes([data[0], data[1]]);
    if msg_type != 0x0001 {
        return None;
    }
    let body_len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20usize.checked_add(body_len)?)?;
    let mut i = 0usize;
    while i + 4 <= body.len() {
        let t = u16::from_be_bytes([body[i], body[i + 1]]);
        let l = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let v = body.get(i + 4..i + 4 + l)?;
        if t == USERNAME {
            if l > MAX_USERNAME {
                return None;
            }
            let s = std::str::from_utf8(v).ok()?;
            return s.split(':').next().filter(|u| !u.is_empty());
        }
        // Attributes are padded to 4 bytes.
        i += 4 + l.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn reads_local_ufrag() {
        assert_eq!(binding_request_ufrag(&request(b"srv1:cli2")), Some("srv1"));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(binding_request_ufrag(b""), None);
        assert_eq!(binding_request_ufrag(&[0u8; 19]), None);
        let mut bad = request(b"srv1:cli2");
        bad[3] = 200; // body length past the end
        assert_eq!(binding_request_ufrag(&bad), None);
        let mut not_req = request(b"srv1:cli2");
        not_req[1] = 0x11;
        assert_eq!(binding_request_ufrag(&not_req), None);
        assert_eq!(binding_request_ufrag(&request(b":x")), None);
        assert_eq!(binding_request_ufrag(&request(&[0xff, 0xfe])), None);
        // Attribute length past the body.
        let mut long = request(b"srv1:cli2");
        long[22] = 0xff;
        assert_eq!(binding_request_ufrag(&long), None);
    }
}
