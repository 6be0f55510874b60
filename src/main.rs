use clap::Parser;
use hookwire::config::{Cli, Command, Settings};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Tap(args)) => hookwire::tap::run(&args),
        Some(Command::Serve(args)) => serve(*args),
        None => serve(cli.serve),
    };
    if let Err(e) = result {
        eprintln!("hookwire: {e}");
        std::process::exit(2);
    }
}

fn serve(args: hookwire::config::ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_args(args)?;
    let routes = settings.routes.clone();
    let cores = settings.cores;
    let running = hookwire::server::start(settings)?;
    eprintln!("listen http://{} cores={cores}", running.addr);
    for route in &routes {
        eprintln!("route {} -> {}", route.pattern, route.endpoints.join(","));
    }
    eprintln!("ready");
    for handle in running.handles {
        let _ = handle.join();
    }
    Ok(())
}
