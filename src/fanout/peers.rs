//! A route socket's monitor: its connection events decoded, and which
//! connections are consumers (they completed the ZeroMQ handshake).

/// What a route socket's monitor said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerEvent {
    /// A consumer completed the ZeroMQ handshake: it can take events.
    Ready,
    /// A consumer that had completed the handshake disconnected; its
    /// kernel queues could hold `queues` bytes (as last sampled).
    Lost {
        queues: u64,
    },
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
    /// The most its kernel queues were seen able to hold ([`queue_sizes`]).
    queues: u64,
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

    /// Reads each connection's queue sizes, which the kernel grows with
    /// the traffic; what a consumer that leaves may not have processed is
    /// bounded by them.
    pub fn sample(&mut self) {
        for p in &mut self.connections {
            p.queues = p.queues.max(queue_sizes(p.fd));
        }
    }

    /// The queues of the connections open now, summed.
    pub fn queues(&self) -> u64 {
        self.connections.iter().map(|p| p.queues).sum()
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
                    queues: queue_sizes(value),
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
                            PeerEvent::Lost { queues: p.queues }
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

/// What a connection's kernel queues can hold: this side's send queue
/// (SO_SNDBUF of libzmq's descriptor `fd`, as the kernel has grown it;
/// 0 once it is closed) and the consumer's receive queue, which is not
/// visible from here: taken as the most this kernel lets one grow to.
fn queue_sizes(fd: std::os::fd::RawFd) -> u64 {
    // SAFETY: `fd` is libzmq's, open unless its DISCONNECTED is still
    // unread; it is only read with getsockopt, which fails on a closed one.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let send = socket2::SockRef::from(&borrowed)
        .send_buffer_size()
        .unwrap_or(0) as u64;
    send + receive_queue_max()
}

/// The largest TCP receive queue: the third field of `tcp_rmem` or
/// `rmem_max`, whichever is larger (6 MiB, Linux's default, if unreadable).
fn receive_queue_max() -> u64 {
    static MAX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        let read = |path: &str| -> Option<u64> {
            let text = std::fs::read_to_string(path).ok()?;
            text.split_whitespace().last()?.parse().ok()
        };
        let tcp = read("/proc/sys/net/ipv4/tcp_rmem");
        let core = read("/proc/sys/net/core/rmem_max");
        match (tcp, core) {
            (None, None) => 6 << 20,
            (a, b) => a.unwrap_or(0).max(b.unwrap_or(0)),
        }
    })
}
