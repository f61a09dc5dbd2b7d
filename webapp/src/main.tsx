import { render } from "preact";
import { App } from "./app/App";
import { currentLocale } from "./i18n";
import "./app/styles.css";

document.documentElement.lang = currentLocale();
render(<App />, document.getElementById("root")!);
