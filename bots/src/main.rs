fn main() {
    eprintln!("bots: not built yet");
    std::process::exit(2)
}
