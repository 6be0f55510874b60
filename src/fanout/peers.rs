//! A route socket's monitor: its connection events decoded, and which
//! connections are consumers (they completed the ZeroMQ handshake).

/// What a route socket's monitor said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerEvent {
    /// A consumer completed the ZeroMQ handshake: it can take events.
    Ready,
    /// A consumer that had completed the handshake disconnected.
    Lost,
    /// The socket is gone (closed, and done sending or lingering).
    Stopped,
    Other,
}

/// A route socket's connections, by descriptor (libzmq's monitor gives it
/// with CONNECTED and DISCONNECTED). A TCP connection alone is not a
/// consumer (a port scanner, a load balancer with no backends, a peer that
/// is not ZeroMQ); one that completed the handshake is.
pub(super) struct Peers {
    /// Receives the socket's connection events.
    monitor: zmq::Socket,
    connections: Vec<Peer>,
    /// Handshakes completed so far.
    handshakes: u64,
}

#[derive(Debug)]
struct Peer {
    fd: std::os::fd::RawFd,
    ready: bool,
    /// `handshakes` when it connected.
    handshakes_before: u64,
}

impl Peers {
    /// Monitors `socket`, route `index` of core `core`, before it connects
    /// (so no connection goes unseen).
    pub fn watch(
        context: &zmq::Context,
        socket: &zmq::Socket,
        core: usize,
        index: usize,
    ) -> Result<Self, zmq::Error> {
        // The context is this core's own: inproc names need only differ by route.
        let monitor_endpoint = format!("inproc://hookwire-monitor-{core}-{index}");
        socket.monitor(
            &monitor_endpoint,
            (zmq::SocketEvent::CONNECTED as i32)
                | (zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)
                | (zmq::SocketEvent::DISCONNECTED as i32)
                | (zmq::SocketEvent::MONITOR_STOPPED as i32),
        )?;
        let monitor = context.socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.connect(&monitor_endpoint)?;
        Ok(Self {
            monitor,
            connections: Vec::new(),
            handshakes: 0,
        })
    }

    /// Consumers connected: connections that completed the handshake.
    #[inline]
    pub fn ready(&self) -> usize {
        self.connections.iter().filter(|p| p.ready).count()
    }

    /// The connections' descriptors (libzmq's).
    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        self.connections.iter().map(|p| p.fd)
    }

    /// The next event from the monitor, if one waits.
    ///
    /// HANDSHAKE_SUCCEEDED does not say which connection it is for: it
    /// marks the oldest connection still waiting. A connection that ends
    /// counts as a consumer lost when it was marked, or when any handshake
    /// completed after it connected (so a mismarked one is never taken for
    /// a non-consumer: at worst a re-send that was not needed).
    pub fn read(&mut self) -> Option<PeerEvent> {
        let frames = self.monitor.recv_multipart(zmq::DONTWAIT).ok()?;
        let Some(head) = frames.first().filter(|f| f.len() >= 6) else {
            return Some(PeerEvent::Other);
        };
        let event = u16::from_ne_bytes([head[0], head[1]]);
        let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]) as i32;
        Some(match event {
            e if e == zmq::SocketEvent::CONNECTED as u16 => {
                self.connections.push(Peer {
                    fd: value,
                    ready: false,
                    handshakes_before: self.handshakes,
                });
                PeerEvent::Other
            }
            e if e == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 => {
                self.handshakes += 1;
                if let Some(p) = self.connections.iter_mut().find(|p| !p.ready) {
                    p.ready = true;
                }
                PeerEvent::Ready
            }
            e if e == zmq::SocketEvent::DISCONNECTED as u16 => {
                match self.connections.iter().position(|p| p.fd == value) {
                    Some(i) => {
                        let p = self.connections.remove(i);
                        if p.ready || self.handshakes > p.handshakes_before {
                            PeerEvent::Lost
                        } else {
                            PeerEvent::Other
                        }
                    }
                    None => PeerEvent::Other,
                }
            }
            e if e == zmq::SocketEvent::MONITOR_STOPPED as u16 => PeerEvent::Stopped,
            _ => PeerEvent::Other,
        })
    }
}
